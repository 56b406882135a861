"""OpenAI-compatible relays: the quirk options, relay failure bodies, URL answers — the pure
functions on bytes, then the provider against FakeAggregator."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.geometry import Size
from imagegate.core.request import Background, ImageRequest, InputImage, Quality
from imagegate.core.result import ImageResult
from imagegate.providers import openai
from imagegate.providers import openai_compatible as relay
from imagegate.providers._http import make_session
from imagegate.providers.openai_compatible import OpenAICompatibleProvider
from tests.fakes.aggregator import FakeAggregator
from tests.fakes.images import encoded_image, encoded_image_b64
from tests.fakes.proxy_pages import NEW_API_CHANNEL_FAILED, NGINX_502

LABEL = "newapi (openai-compatible)"


def deployment(
    model: str = "gpt-image-1.5",
    base_url: str = "https://relay.test/v1",
    capabilities: Capabilities | None = None,
    **options: Any,
) -> Deployment:
    return Deployment(
        "relay",
        "newapi",
        "openai-compatible",
        model,
        base_url,
        options=options,
        capabilities=capabilities,
    )


def request(**fields: Any) -> ImageRequest:
    fields.setdefault("prompt", "a fox")
    return ImageRequest(model="m", **fields)


def built(req: ImageRequest, dep: Deployment) -> tuple[str, dict[str, Any], list[str]]:
    provider = OpenAICompatibleProvider(dep, None)  # type: ignore[arg-type]
    url, body, notes = relay.build_generation(req, dep, provider.capabilities, provider.options)
    return url, orjson.loads(body), notes


# --- options and capabilities ---------------------------------------------------------------------


def test_wrong_options_are_config_errors_naming_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        relay.options_of(deployment(base_url="", size_style="pixels", drop_fields="n"))
    text = "\n".join(caught.value.problems)
    assert "deployments.relay: an openai-compatible provider needs base_url" in text
    assert "deployments.relay.options.size_style" in text
    assert "deployments.relay.options.drop_fields" in text


def test_defaults_are_conservative_and_drop_fields_shrink_declared_ones() -> None:
    plain = OpenAICompatibleProvider(deployment(), None).capabilities  # type: ignore[arg-type]
    assert (plain.max_n, plain.sizes, plain.output_formats, plain.qualities) == (
        1,
        ("1024x1024", "1536x1024", "1024x1536"),
        ("png",),
        ("auto",),
    )
    assert plain.max_input_images == 1 and not plain.mask and not plain.transparent_background
    gemini = OpenAICompatibleProvider(deployment(size_style="aspect_ratio"), None)  # type: ignore[arg-type]
    assert gemini.capabilities.sizes is None and "21:9" in (gemini.capabilities.aspect_ratios or ())
    declared = openai.capabilities_for("gpt-image-1.5")
    shrunk = OpenAICompatibleProvider(
        deployment(capabilities=declared, drop_fields=["n", "quality", "background"]),
        None,  # type: ignore[arg-type]
    ).capabilities
    assert (shrunk.max_n, shrunk.qualities, shrunk.transparent_background) == (1, ("auto",), False)
    assert shrunk.mask and shrunk.max_input_images == 16  # the rest as declared


def test_auth_header_and_scheme() -> None:
    key = UpstreamKey("relay:K", "sk-1")
    default = relay.options_of(deployment(extra_headers={"X-Title": "imagegate"}))
    assert relay.request_headers(default, key, "application/json") == {
        "X-Title": "imagegate",
        "Content-Type": "application/json",
        "Authorization": "Bearer sk-1",
    }
    raw = relay.options_of(deployment(auth_header="x-api-key", auth_scheme=""))
    assert relay.request_headers(raw, key, "a/b")["x-api-key"] == "sk-1"
    assert "Authorization" not in relay.request_headers(default, None, "a/b")


# --- the body -------------------------------------------------------------------------------------


def test_response_format_extra_body_and_passthrough() -> None:
    url, body, notes = built(
        request(
            quality=Quality.AUTO,
            passthrough={"openai": {"moderation": "low"}, "openai-compatible": {"seed": 7}},
        ),
        deployment(
            images_path="/draw",
            response_format="b64_json",
            extra_body={"watermark": False, "size": "9x9"},
        ),
    )
    assert url == "https://relay.test/v1/draw"
    assert body["response_format"] == "b64_json"
    assert body["watermark"] is False and body["size"] == "auto"  # the request's fields win
    assert body["moderation"] == "low" and body["seed"] == 7
    assert notes == []
    seeded = deployment(capabilities=Capabilities(seed=True))
    assert built(request(seed=42), seeded)[1]["seed"] == 42


def test_dropped_fields_are_left_out_and_noted() -> None:
    _, body, notes = built(
        request(output_format="png", output_compression=100),
        deployment(drop_fields=["output_format", "output_compression", "style"]),
    )
    assert "output_format" not in body and "output_compression" not in body
    assert notes == [
        "`output_format` ('png') was not sent: the upstream rejects it (option drop_fields)",
        "`output_compression` (100) was not sent: the upstream rejects it (option drop_fields)",
    ]


def test_sizes_for_the_declared_capabilities() -> None:
    assert built(request(aspect_ratio="3:2"), deployment())[1]["size"] == "1536x1024"
    arbitrary = deployment(capabilities=openai.capabilities_for("gpt-image-2"))
    assert built(request(aspect_ratio="16:9", resolution="1K"), arbitrary)[1]["size"] == "1360x768"
    listed = deployment(
        capabilities=Capabilities(
            sizes=("1024x1024", "1792x1024", "1024x1792"), aspect_ratios=("1:1", "16:9", "9:16")
        )
    )
    assert built(request(aspect_ratio="16:9"), listed)[1]["size"] == "1792x1024"


def test_aspect_ratio_style_sends_gemini_fields_instead_of_size() -> None:
    gemini = deployment(size_style="aspect_ratio")
    _, body, _ = built(request(size=Size(1536, 1024)), gemini)
    assert "size" not in body
    assert (body["aspect_ratio"], body["image_size"]) == ("3:2", "1K")
    _, body, _ = built(request(aspect_ratio="16:9", resolution="1K"), gemini)
    assert (body["aspect_ratio"], body["image_size"]) == ("16:9", "1K")
    _, body, _ = built(request(), gemini)
    assert "aspect_ratio" not in body and "image_size" not in body


# --- answers --------------------------------------------------------------------------------------


def test_b64_with_a_data_url_prefix_and_url_answers() -> None:
    b64 = encoded_image_b64(64, 32, "png").decode()
    body = orjson.dumps({"created": 1, "data": [{"b64_json": f"data:image/png;base64,{b64}"}]})
    result = ImageResult(images=[])
    openai.whole_answer(body, result, LABEL, relay.IMAGE_MARKER)
    assert [(i.format, i.width, i.height) for i in result.images] == [("png", 64, 32)]
    assert relay.IMAGE_MARKER.search(b'{"data":[{"b64_json":"da') is None  # wait for more
    skeleton = {
        "data": [{"url": "/files/a.png"}, {"url": "img/b.png"}, {"url": "https://cdn.test/c"}, {}]
    }
    assert relay.image_urls(skeleton, "https://relay.test/v1") == [
        "https://relay.test/files/a.png",  # URL rules: a path from the host's root
        "https://relay.test/v1/img/b.png",
        "https://cdn.test/c",
    ]


def test_a_200_without_images() -> None:
    assert relay.answer_without_image({"data": []}, LABEL).kind is FailureKind.EMPTY
    channel = {"error": {"message": "get_channel_failed", "type": "new_api_error"}}
    assert relay.answer_without_image(channel, LABEL).kind is FailureKind.UNAVAILABLE
    other = relay.answer_without_image({"error": {"message": "upstream said no"}}, LABEL)
    assert other.kind is FailureKind.EMPTY and "upstream said no" in other.diagnosis


# --- failures -------------------------------------------------------------------------------------


def new_api(message: str, code: str = "") -> Mapping[str, Any]:
    return {"error": {"message": message, "type": "new_api_error", "param": "", "code": code}}


FAILURES = [
    ("channel", 500, NEW_API_CHANNEL_FAILED, FailureKind.UNAVAILABLE),
    ("no channel", 503, new_api("当前分组 default 下对于模型 x 无可用渠道", "model_not_found"),
     FailureKind.UNAVAILABLE),
    ("saturated", 429, new_api("当前分组上游负载已饱和，请稍后再试"), FailureKind.CAPACITY),
    ("user quota", 403, new_api("用户额度不足, 剩余额度: ＄0.000000", "insufficient_user_quota"),
     FailureKind.BILLING),
    ("token quota", 403, new_api("token quota is not enough", "pre_consume_token_quota_failed"),
     FailureKind.BILLING),
    ("payment", 402, {"error": {"message": "Insufficient credits"}}, FailureKind.BILLING),
    ("openai quota", 429, {"error": {"message": "You exceeded your current quota",
                                     "type": "insufficient_quota", "code": "insufficient_quota"}},
     FailureKind.BILLING),
    ("gemini quota is a rate limit", 429,
     {"error": {"message": "Quota exceeded for metric: generate_content_requests", "code": 429}},
     FailureKind.RATE_LIMITED),
    ("bad token", 401, new_api("无效的令牌"), FailureKind.AUTH),
    ("litellm 429", 429, {"error": {"message": "litellm.RateLimitError: x", "type": "None",
                                    "param": "None", "code": "429"}}, FailureKind.RATE_LIMITED),
    ("moderation", 400, {"error": {"message": "rejected by the safety system",
                                   "type": "image_generation_user_error",
                                   "code": "moderation_blocked"}}, FailureKind.SAFETY),
    ("fastapi detail", 500, {"detail": "CUDA out of memory"}, FailureKind.UNAVAILABLE),
    ("error as text", 400, {"error": "size must be WxH"}, FailureKind.BAD_REQUEST),
    ("not found", 404, {"error": {"message": "model x not found", "code": "model_not_found"}},
     FailureKind.NOT_FOUND),
    ("nginx", 502, NGINX_502, FailureKind.UNAVAILABLE),
    ("cloudflare", 524, b"<html><title>x | 524: A timeout occurred</title></html>",
     FailureKind.TIMEOUT),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "kind"), [case[1:] for case in FAILURES], ids=[c[0] for c in FAILURES]
)
def test_relay_failures(status: int, body: object, kind: FailureKind) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    error = relay.classify_failure(status, {"retry-after": "2"}, raw, LABEL)
    assert error.kind is kind, error.diagnosis
    assert "OpenAI " not in error.diagnosis.replace("openai-compatible", "")
    if kind is FailureKind.RATE_LIMITED:
        assert error.retry_after == 2


# --- against the fake -----------------------------------------------------------------------------


async def run(
    fake: FakeAggregator,
    req: ImageRequest,
    *,
    model: str = "gpt-image-1.5",
    key: str | None = "sk-relay",
    **options: Any,
) -> ImageResult | UpstreamError:
    session = make_session()
    try:
        provider = OpenAICompatibleProvider(
            deployment(model, base_url=fake.base_url + "/v1", **options), session
        )
        try:
            result = await provider.generate(req, None if key is None else UpstreamKey("r", key))
        except UpstreamError as error:
            return error
        await result.aclose()
        return result
    finally:
        await session.close()


async def test_url_answers_are_downloaded_each_one() -> None:
    async with FakeAggregator(delivery="url_only") as fake:
        result = await run(
            fake, request(n=2, size=Size(1024, 1536), deadline=time.monotonic() + 30)
        )
    assert isinstance(result, ImageResult), result
    assert [(i.width, i.height) for i in result.images] == [(1024, 1536)] * 2
    downloads = [r for r in fake.requests if r.path.startswith("/files/")]
    assert len(downloads) == 2
    assert all("authorization" not in r.headers for r in downloads)  # the key stays with the API


async def test_response_format_b64_json_gets_base64_from_a_url_relay() -> None:
    async with FakeAggregator(delivery="url") as fake:
        result = await run(fake, request(), response_format="b64_json")
        assert isinstance(result, ImageResult), result
        assert not [r for r in fake.requests if r.path.startswith("/files/")]
        assert fake.requests[-1].json == {
            "model": "gpt-image-1.5",
            "prompt": "a fox",
            "n": 1,
            "size": "auto",
            "response_format": "b64_json",
        }


async def test_a_rejected_field_fails_unless_dropped_and_then_is_noted() -> None:
    async with FakeAggregator(rejects={"background"}) as fake:
        asked = request(background=Background.OPAQUE)
        refused = await run(fake, asked)
        assert isinstance(refused, UpstreamError) and refused.kind is FailureKind.BAD_REQUEST
        assert refused.param == "background"
        result = await run(fake, asked, drop_fields=["background"])
    assert isinstance(result, ImageResult), result
    assert result.notes == [
        "`background` ('opaque') was not sent: the upstream rejects it (option drop_fields)"
    ]


async def test_no_key_sends_no_auth_header() -> None:
    async with FakeAggregator() as fake:
        error = await run(fake, request(), key=None)
        assert "authorization" not in fake.requests[-1].headers
    assert isinstance(error, UpstreamError) and error.kind is FailureKind.AUTH


async def test_a_gemini_relay_edit_takes_the_image_and_aspect_fields() -> None:
    image = encoded_image(96, 64, "png")
    async with FakeAggregator(models={"nano": "gemini-2.5-flash-image"}) as fake:
        result = await run(
            fake,
            request(aspect_ratio="4:3", input_images=(InputImage(image, "image/png"),)),
            model="nano",
            size_style="aspect_ratio",
        )
        form = fake.requests[-1].form
    assert isinstance(result, ImageResult), result
    assert (result.images[0].width, result.images[0].height) == (1184, 864)
    assert form["aspect_ratio"] == ["4:3"] and "size" not in form
    sent = form["image"][0]
    assert not isinstance(sent, str) and sent.data == image
    assert base64.b64encode(sent.data)  # a real upload, not text
