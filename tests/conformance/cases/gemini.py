"""Gemini Developer API image models against FakeGemini."""

from __future__ import annotations

import base64
from typing import Any

from imagegate.core.errors import FailureKind
from imagegate.providers.gemini_mask import MASK_INSTRUCTION
from tests.conformance.case import ProviderCase, Sent
from tests.fakes.gemini import FakeGemini
from tests.fakes.server import FakeUpstream

SCENARIOS = {
    "ok": None,
    "jpeg_output": None,
    "rate_limited": FailureKind.RATE_LIMITED,
    "quota_zero": FailureKind.QUOTA_ZERO,
    "capacity": FailureKind.CAPACITY,
    "unavailable": FailureKind.UNAVAILABLE,
    "internal": FailureKind.UNAVAILABLE,
    "deadline": FailureKind.TIMEOUT,
    "billing": FailureKind.BILLING,
    "permission_denied": FailureKind.AUTH,
    "bad_key": FailureKind.AUTH,
    "get_channel_failed": FailureKind.UNAVAILABLE,
    "cf_524": FailureKind.TIMEOUT,
    "image_safety": FailureKind.SAFETY,
    "prompt_blocked": FailureKind.SAFETY,
    "text_only": FailureKind.EMPTY,
    "empty_candidates": FailureKind.EMPTY,
    "truncated": FailureKind.UNAVAILABLE,
    "disconnect": FailureKind.UNAVAILABLE,
}


def _inline(part: dict[str, Any]) -> bytes | None:
    inline = part.get("inlineData") or part.get("inline_data")
    if not inline:
        return None
    return base64.b64decode(inline["data"])


def sent_gemini(fake: FakeUpstream) -> list[Sent]:
    calls = []
    for record in fake.requests:
        if ":generateContent" not in record.path or record.json is None:
            continue
        body = record.json
        parts = body["contents"][-1]["parts"]
        images: list[bytes] = []
        mask: bytes | None = None
        after_instruction = False
        for part in parts[1:]:
            if part.get("text") == MASK_INSTRUCTION:
                after_instruction = True
            elif (data := _inline(part)) is not None:
                if after_instruction:
                    mask = data
                else:
                    images.append(data)
        config = body.get("generationConfig", {})
        calls.append(
            Sent(
                prompt=parts[0]["text"],
                seed=config.get("seed"),
                images=tuple(images),
                mask=mask,
                mask_convention="white",
                extra=config,
            )
        )
    return calls


CASES = [
    ProviderCase(
        id=f"gemini/{model}",
        kind="gemini",
        model=model,
        make_fake=FakeGemini,
        sent=sent_gemini,
        base_path="/v1beta",
        scenarios=SCENARIOS,
    )
    for model in ("gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-3.1-flash-image")
]
