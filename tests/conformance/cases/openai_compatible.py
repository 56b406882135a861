"""OpenAI-compatible relays against FakeAggregator, each with the quirk it is known for:

- a New API-style relay answering `b64_json`, in front of gpt-image-1.5 (default options);
- a URL-only relay behind a custom path and an `x-api-key` header, which rejects
  `output_format` (options `images_path`, `edits_path`, `auth_header`, `auth_scheme`,
  `drop_fields`): its images are downloaded;
- a relay fronting Gemini that answers with URLs unless `response_format: b64_json` is sent and
  takes `aspect_ratio`/`image_size` instead of `size` (options `response_format`, `size_style`,
  `extra_body`).

This kind ships no catalog entries, so every case runs on the provider's conservative defaults.
"""

from __future__ import annotations

from collections.abc import Callable

from imagegate.core.errors import FailureKind
from tests.conformance.case import ProviderCase, Sent
from tests.fakes.aggregator import FakeAggregator
from tests.fakes.server import FakeUpstream, UploadedFile

COMMON = {
    "ok": None,
    "url_answer": None,
    "expired_url": FailureKind.EMPTY,
    "rate_limited": FailureKind.RATE_LIMITED,
    "litellm_rate_limited": FailureKind.RATE_LIMITED,
    "get_channel_failed": FailureKind.UNAVAILABLE,
    "no_channel": FailureKind.UNAVAILABLE,
    "saturated": FailureKind.CAPACITY,
    "insufficient_user_quota": FailureKind.BILLING,
    "invalid_token": FailureKind.AUTH,
    "upstream_error": FailureKind.UNAVAILABLE,
    "local_server_error": FailureKind.UNAVAILABLE,
    "bad_gateway": FailureKind.UNAVAILABLE,
    "cf_524": FailureKind.TIMEOUT,
    "empty_data": FailureKind.EMPTY,
    "truncated": FailureKind.UNAVAILABLE,
    "disconnect": FailureKind.UNAVAILABLE,
}
OPENAI_BACKED = {**COMMON, "moderation_blocked": FailureKind.SAFETY}


def sent_to(generations: str, edits: str) -> Callable[[FakeUpstream], list[Sent]]:
    """The image calls the relay received at its two paths, provider-neutral."""

    def sent(fake: FakeUpstream) -> list[Sent]:
        calls = []
        for record in fake.requests:
            if record.path == generations and record.json is not None:
                body = record.json
                calls.append(Sent(prompt=body["prompt"], n=int(body.get("n", 1)), extra=body))
            elif record.path == edits and record.form:
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
                        extra={k: v[0] for k, v in form.items() if isinstance(v[0], str)},
                    )
                )
        return calls

    return sent


def sent_gemini_relay(fake: FakeUpstream) -> list[Sent]:
    calls = sent_to("/v1/images/generations", "/v1/images/edits")(fake)
    for call in calls:
        assert call.extra.get("response_format") == "b64_json"
        assert "size" not in call.extra, "a Gemini relay gets aspect_ratio, not size"
        assert call.extra.get("user_tag") == "imagegate"  # extra_body
    return calls


CASES = [
    ProviderCase(
        id="openai-compatible/gpt-image-1.5",
        kind="openai-compatible",
        model="gpt-image-1.5",
        make_fake=FakeAggregator,
        sent=sent_to("/v1/images/generations", "/v1/images/edits"),
        base_path="/v1",
        scenarios=OPENAI_BACKED,
    ),
    ProviderCase(
        id="openai-compatible/image-pro",
        kind="openai-compatible",
        model="image-pro",
        make_fake=lambda: FakeAggregator(
            models={"image-pro": "gpt-image-1.5"},
            prefix="/api",
            images_path="/v2/draw",
            edits_path="/v2/draw/edit",
            auth_header="x-api-key",
            auth_scheme="",
            delivery="url_only",
            rejects={"output_format"},
        ),
        sent=sent_to("/api/v2/draw", "/api/v2/draw/edit"),
        base_path="/api",
        options={
            "images_path": "/v2/draw",
            "edits_path": "/v2/draw/edit",
            "auth_header": "x-api-key",
            "auth_scheme": "",
            "drop_fields": ["output_format"],
        },
        scenarios=OPENAI_BACKED,
    ),
    ProviderCase(
        id="openai-compatible/nano-banana",
        kind="openai-compatible",
        model="nano-banana",
        make_fake=lambda: FakeAggregator(
            models={"nano-banana": "gemini-2.5-flash-image"}, delivery="url"
        ),
        sent=sent_gemini_relay,
        base_path="/v1",
        options={
            "response_format": "b64_json",
            "size_style": "aspect_ratio",
            "extra_body": {"user_tag": "imagegate"},
        },
        scenarios=COMMON,
    ),
]
