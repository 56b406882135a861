"""fal.ai's queue API against FakeFal: one case per way fal models take their geometry.

- `fal-ai/flux-2-pro`: image_size {width, height} (or a preset), edits through
  `fal-ai/flux-2-pro/edit` with several `image_urls`;
- `fal-ai/nano-banana-pro`: aspect_ratio + resolution, num_images, up to 14 `image_urls`;
- `fal-ai/gpt-image-1.5`: three named sizes, quality, transparent background;
- `fal-ai/flux/dev`: a mask goes to FLUX.1 [dev] inpainting as `mask_url` (white = edit).

Every job goes IN_QUEUE → IN_PROGRESS → COMPLETED over several polls before its result.
"""

from __future__ import annotations

from typing import Any

from imagegate.core.errors import FailureKind
from tests.conformance.case import ProviderCase, Sent
from tests.fakes.fal import FakeFal
from tests.fakes.fal_wire import decode_data_uri
from tests.fakes.server import FakeUpstream

SCENARIOS: dict[str, FailureKind | None] = {
    "ok": None,  # IN_QUEUE (queue_position) → IN_PROGRESS → COMPLETED → result → download
    "sync_mode": None,  # the images come back inline as data: URIs
    "nsfw": FailureKind.SAFETY,  # has_nsfw_concepts: [true], a black image
    "content_policy": FailureKind.SAFETY,  # COMPLETED with error_type content_policy_violation
    "completed_error": FailureKind.UNAVAILABLE,  # COMPLETED with runner_server_error
    "validation": FailureKind.BAD_REQUEST,  # the result URL answers a FastAPI 422 list
    "unauthorized": FailureKind.AUTH,
    "payment_required": FailureKind.BILLING,  # 403 "User is locked. Reason: Exhausted balance"
    "rate_limited": FailureKind.RATE_LIMITED,
    "server_error": FailureKind.UNAVAILABLE,
    "gateway_timeout": FailureKind.TIMEOUT,  # 504 request_timeout
    "bad_gateway": FailureKind.UNAVAILABLE,
    "cf_524": FailureKind.TIMEOUT,
    "lost_file": FailureKind.EMPTY,  # the result file answers 404
    "disconnect": FailureKind.UNAVAILABLE,
}
# Fast polls: the suite makes dozens of jobs.
OPTIONS = {"poll_seconds": 0.002, "poll_max_seconds": 0.01}


def sent_fal(fake: FakeUpstream) -> list[Sent]:
    """The submits, with their data: URIs decoded back to the bytes the client sent."""
    calls = []
    for record in fake.requests:
        body = record.json
        if record.method != "POST" or body is None or record.path.startswith("/_fake/"):
            continue
        urls: Any = body.get("image_urls") or ([body["image_url"]] if "image_url" in body else [])
        mask = body.get("mask_url")
        calls.append(
            Sent(
                prompt=str(body.get("prompt", "")),
                n=int(body.get("num_images", 1)),
                seed=body.get("seed"),
                images=tuple(decode_data_uri(url, "image_urls") for url in urls),
                mask=None if mask is None else decode_data_uri(mask, "mask_url"),
                mask_convention="white",
                extra=body,
            )
        )
    return calls


def _slow_queue(fake: FakeUpstream) -> None:
    assert isinstance(fake, FakeFal)
    fake.queue_polls, fake.progress_polls = 2, 2


CASES = [
    ProviderCase(
        id=f"fal/{model}",
        kind="fal",
        model=model,
        make_fake=FakeFal,
        sent=sent_fal,
        options=OPTIONS,
        scenarios=SCENARIOS,
        prepare=_slow_queue,
    )
    for model in (
        "fal-ai/flux-2-pro",
        "fal-ai/nano-banana-pro",
        "fal-ai/gpt-image-1.5",
        "fal-ai/flux/dev",
    )
]
