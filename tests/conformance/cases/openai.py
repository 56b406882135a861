"""OpenAI Images API against FakeOpenAI: a fixed-size model and an arbitrary-size one."""

from __future__ import annotations

from imagegate.core.errors import FailureKind
from tests.conformance.case import ProviderCase, Sent
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeUpstream, UploadedFile

SCENARIOS = {
    "ok": None,
    "rate_limited": FailureKind.RATE_LIMITED,
    "insufficient_quota": FailureKind.BILLING,
    "moderation_blocked": FailureKind.SAFETY,
    "forbidden": FailureKind.AUTH,
    "server_error": FailureKind.UNAVAILABLE,
    "unavailable": FailureKind.CAPACITY,  # "The server is overloaded or not ready yet."
    "bad_gateway": FailureKind.UNAVAILABLE,
    "cf_524": FailureKind.TIMEOUT,
    "empty_data": FailureKind.EMPTY,
    "truncated": FailureKind.UNAVAILABLE,
    "disconnect": FailureKind.UNAVAILABLE,
}


def sent_openai(fake: FakeUpstream) -> list[Sent]:
    calls = []
    for record in fake.requests:
        if record.path.endswith("/images/generations") and record.json is not None:
            body = record.json
            calls.append(Sent(prompt=body["prompt"], n=int(body.get("n", 1)), extra=body))
        elif record.path.endswith("/images/edits") and record.form:
            form = record.form
            files = [v for name in ("image", "image[]") for v in form.get(name, [])]
            masks = [v for v in form.get("mask", []) if isinstance(v, UploadedFile)]
            calls.append(
                Sent(
                    prompt=str(form["prompt"][0]),
                    n=int(str(form.get("n", ["1"])[0])),
                    images=tuple(f.data for f in files if isinstance(f, UploadedFile)),
                    mask=masks[0].data if masks else None,
                    mask_convention="alpha",
                )
            )
    return calls


CASES = [
    ProviderCase(
        id=f"openai/{model}",
        kind="openai",
        model=model,
        make_fake=FakeOpenAI,
        sent=sent_openai,
        base_path="/v1",
        scenarios=SCENARIOS,
    )
    for model in ("gpt-image-1.5", "gpt-image-2")
]
