"""Black Forest Labs FLUX API against FakeBfl: one case per endpoint family.

Every case polls fast (`poll_seconds`); tasks stay Pending for one poll (the fake's default), so
each image goes submit → Pending → Ready → download.
"""

from __future__ import annotations

import base64

from imagegate.core.errors import FailureKind
from tests.conformance.case import ProviderCase, Sent
from tests.fakes.bfl import FakeBfl
from tests.fakes.bfl_wire import ENDPOINTS
from tests.fakes.server import FakeUpstream

SCENARIOS = {
    "ok": None,  # Pending → Ready
    "flaky_poll": None,  # one poll answers 503; the task is still there
    "request_moderated": FailureKind.SAFETY,
    "content_moderated": FailureKind.SAFETY,
    "error": FailureKind.UNAVAILABLE,
    "task_not_found": FailureKind.UNAVAILABLE,
    "result_expired": FailureKind.EMPTY,
    "truncated": FailureKind.UNAVAILABLE,
    "out_of_credits": FailureKind.BILLING,
    "rate_limited": FailureKind.RATE_LIMITED,
    "unauthorized": FailureKind.AUTH,
    "forbidden": FailureKind.AUTH,
    "server_error": FailureKind.UNAVAILABLE,
    "unavailable": FailureKind.UNAVAILABLE,
    "bad_gateway": FailureKind.UNAVAILABLE,
    "cf_524": FailureKind.TIMEOUT,
    "disconnect": FailureKind.UNAVAILABLE,
}
OPTIONS = {"poll_seconds": 0.005, "poll_max_seconds": 0.02}


def sent_bfl(fake: FakeUpstream) -> list[Sent]:
    calls = []
    for record in fake.requests:
        model = record.path.removeprefix("/v1/")
        if record.method != "POST" or model not in ENDPOINTS or record.json is None:
            continue
        body = record.json
        names = ENDPOINTS[model].image_fields
        images = tuple(base64.b64decode(body[name]) for name in names if name in body)
        mask = body.get("mask")
        calls.append(
            Sent(
                prompt=body.get("prompt", ""),
                seed=body.get("seed"),
                images=images,
                mask=base64.b64decode(mask) if mask else None,
                mask_convention="white",
                extra=body,
            )
        )
    return calls


def _case(model: str, **more: object) -> ProviderCase:
    return ProviderCase(
        id=f"bfl/{model}",
        kind="bfl",
        model=model,
        make_fake=FakeBfl,
        sent=sent_bfl,
        options=OPTIONS,
        scenarios=SCENARIOS,
        **more,  # type: ignore[arg-type]
    )


CASES = [
    _case("flux-2-pro"),
    _case("flux-kontext-pro"),
    _case("flux-pro-1.1", arbitrary_sizes=("1440x960", "960x1440", "1024x768")),
    _case("flux-pro-1.1-ultra"),
    _case("flux-pro-1.0-fill"),
]
