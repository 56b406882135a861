"""Replicate predictions against FakeReplicate: one model of each input family.

FLUX.2 [pro] (any WxH, up to 8 input images), Kontext [pro] (one input image, 13 ratios), FLUX.1
[schnell] (num_outputs up to 4) and nano-banana-pro (image_input, 1K–4K). Polls are made fast
(`poll_seconds`) so the slow-job scenarios (starting → processing → succeeded) stay quick.
"""

from __future__ import annotations

import base64

from imagegate.core.errors import FailureKind
from tests.conformance.case import ProviderCase, Sent
from tests.fakes.replicate import FakeReplicate
from tests.fakes.server import FakeUpstream

SCENARIOS = {
    "ok": None,
    "slow_job": None,  # starting → processing → succeeded across polls
    "failed_nsfw": FailureKind.SAFETY,
    "failed_sensitive": FailureKind.SAFETY,
    "failed_error": FailureKind.UNAVAILABLE,
    "canceled": FailureKind.UNAVAILABLE,
    "validation": FailureKind.BAD_REQUEST,
    "unauthorized": FailureKind.AUTH,
    "insufficient_credit": FailureKind.BILLING,
    "rate_limited": FailureKind.RATE_LIMITED,
    "server_error": FailureKind.UNAVAILABLE,
    "bad_gateway": FailureKind.UNAVAILABLE,
    "cf_524": FailureKind.TIMEOUT,
    "disconnect": FailureKind.UNAVAILABLE,
}
IMAGE_FIELDS = ("input_images", "input_image", "image_input")


def _data(uri: str) -> bytes:
    return base64.b64decode(uri.partition(",")[2])


def sent_replicate(fake: FakeUpstream) -> list[Sent]:
    """Create calls (not polls or cancels), with their input images decoded."""
    calls = []
    for record in fake.requests:
        body = record.json
        if record.method != "POST" or not record.path.endswith("/predictions") or body is None:
            continue
        given = body.get("input") or {}
        images: list[bytes] = []
        for name in IMAGE_FIELDS:
            value = given.get(name)
            items = [value] if isinstance(value, str) else (value or [])
            images += [_data(item) for item in items if item.startswith("data:")]
        calls.append(
            Sent(
                prompt=given.get("prompt", ""),
                n=int(given.get("num_outputs", 1)),
                seed=given.get("seed"),
                images=tuple(images),
                extra=given,
            )
        )
    return calls


CASES = [
    ProviderCase(
        id=f"replicate/{model}",
        kind="replicate",
        model=model,
        make_fake=FakeReplicate,
        sent=sent_replicate,
        base_path="/v1",
        options={"poll_seconds": 0.01},
        scenarios=SCENARIOS,
    )
    for model in (
        "black-forest-labs/flux-2-pro",
        "black-forest-labs/flux-kontext-pro",
        "black-forest-labs/flux-schnell",
        "google/nano-banana-pro",
    )
]
