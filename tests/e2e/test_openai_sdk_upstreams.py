"""The official openai SDK → gateway → fake Gemini and OpenAI servers speaking their wire formats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio

from tests.conftest import MakeClient, StartGateway
from tests.e2e.helpers import decode_image
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI

GEMINI_KEY, OPENAI_KEY = "gemini-test-key", "sk-openai-test-key"


@pytest_asyncio.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(keys={GEMINI_KEY}) as fake:
        yield fake


@pytest_asyncio.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(keys={OPENAI_KEY}) as fake:
        yield fake


@pytest.fixture
async def gateway(
    start_gateway: StartGateway,
    gemini: FakeGemini,
    openai_fake: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.setenv("TEST_GEMINI_KEY", GEMINI_KEY)
    monkeypatch.setenv("TEST_OPENAI_KEY", OPENAI_KEY)
    config: dict[str, Any] = {
        "providers": {
            "google": {
                "kind": "gemini",
                "base_url": f"{gemini.base_url}/v1beta",
                "keys": ["TEST_GEMINI_KEY"],
            },
            "oa": {
                "kind": "openai",
                "base_url": f"{openai_fake.base_url}/v1",
                "keys": ["TEST_OPENAI_KEY"],
            },
        },
        "deployments": {
            "flash": {"provider": "google", "model": "gemini-2.5-flash-image"},
            "pro": {"provider": "google", "model": "gemini-3-pro-image-preview"},
            "gpt": {"provider": "oa", "model": "gpt-image-1.5"},
        },
        "routes": {
            "flash": ["flash"],
            "pro": ["pro"],
            "gpt": ["gpt"],
            "flash-then-gpt": ["flash", "gpt"],
        },
    }
    return await start_gateway(config)


SIZES = ["1024x1024", "1536x1024", "1024x1536"]


@pytest.mark.parametrize("size", SIZES)
async def test_openai_route_returns_the_exact_size(
    openai_client: MakeClient, gateway: str, openai_fake: FakeOpenAI, size: str
) -> None:
    result = await openai_client(gateway).images.generate(model="gpt", prompt="a fox", size=size)  # type: ignore[arg-type]
    assert result.data is not None
    image = decode_image(result.data[0].b64_json or "")
    assert f"{image.width}x{image.height}" == size
    sent = openai_fake.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert (
        sent.json is not None
        and sent.json["size"] == size
        and sent.json["model"] == "gpt-image-1.5"
    )
    assert "response_format" not in sent.json  # GPT image models reject it; the gateway makes URLs


@pytest.mark.parametrize(
    ("size", "ratio"), [("1024x1024", "1:1"), ("1536x1024", "3:2"), ("1024x1536", "2:3")]
)
@pytest.mark.parametrize("route", ["flash", "pro"])
async def test_gemini_route_returns_the_asked_aspect(
    openai_client: MakeClient, gateway: str, gemini: FakeGemini, route: str, size: str, ratio: str
) -> None:
    result = await openai_client(gateway).images.generate(model=route, prompt="a fox", size=size)  # type: ignore[arg-type]
    assert result.data is not None
    image = decode_image(result.data[0].b64_json or "")
    width, height = (int(v) for v in size.split("x"))
    assert abs(image.width / image.height - width / height) < 0.03
    sent = gemini.requests[-1]
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY
    assert sent.json is not None
    config = sent.json["generationConfig"]
    assert config["imageConfig"]["aspectRatio"] == ratio
    assert "IMAGE" in config["responseModalities"]
    assert (
        result.usage is not None and result.usage.output_tokens > 0
    )  # Gemini's usage came through


async def test_n2_on_gemini_is_two_parallel_calls_and_two_images(
    openai_client: MakeClient, gateway: str, gemini: FakeGemini
) -> None:
    result = await openai_client(gateway).images.generate(model="pro", prompt="two foxes", n=2)
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        decode_image(item.b64_json or "")
    assert len(gemini.requests) == 2  # Gemini has no n: one call per image


async def test_n2_on_openai_is_one_call(
    openai_client: MakeClient, gateway: str, openai_fake: FakeOpenAI
) -> None:
    result = await openai_client(gateway).images.generate(model="gpt", prompt="two foxes", n=2)
    assert result.data is not None and len(result.data) == 2
    assert len(openai_fake.requests) == 1 and openai_fake.requests[0].json["n"] == 2  # type: ignore[index]


@pytest.mark.parametrize("route", ["flash", "gpt"])
async def test_url_and_b64_both_work(openai_client: MakeClient, gateway: str, route: str) -> None:
    import aiohttp

    by_url = await openai_client(gateway).images.generate(
        model=route, prompt="a fox", response_format="url"
    )
    assert by_url.data is not None and by_url.data[0].url
    async with aiohttp.ClientSession() as session, session.get(by_url.data[0].url) as response:
        assert response.status == 200 and response.content_type == "image/png"
    by_b64 = await openai_client(gateway).images.generate(
        model=route, prompt="a fox", response_format="b64_json"
    )
    assert by_b64.data is not None and by_b64.data[0].b64_json


async def test_fallback_to_the_second_candidate_when_the_first_answers_503(
    openai_client: MakeClient, gateway: str, gemini: FakeGemini, openai_fake: FakeOpenAI
) -> None:
    gemini.set_mode("unavailable")
    raw = await openai_client(gateway).images.with_raw_response.generate(
        model="flash-then-gpt", prompt="a fox", size="1536x1024"
    )
    result = raw.parse()
    assert raw.headers["x-imagegate-deployment"] == "gpt"
    assert raw.headers["x-imagegate-attempts"] == "2"
    assert result.data is not None
    assert decode_image(result.data[0].b64_json or "").size == (1536, 1024)
    assert gemini.counts["unavailable"] == 1 and len(openai_fake.requests) == 1


async def test_gemini_png_is_transcoded_when_webp_is_asked(
    openai_client: MakeClient, gateway: str
) -> None:
    raw = await openai_client(gateway).images.with_raw_response.generate(
        model="flash", prompt="a fox", output_format="webp"
    )
    assert "transcoded to webp" in raw.headers["x-imagegate-notes"]
    assert decode_image(raw.parse().data[0].b64_json or "").format == "WEBP"  # type: ignore[index]


@pytest.mark.parametrize(
    ("scenario", "error_class", "code", "fragment"),
    [
        ("quota_zero", openai.RateLimitError, "quota_zero", "enable billing"),
        ("image_safety", openai.BadRequestError, "safety", "IMAGE_SAFETY"),
        ("text_only", openai.APIStatusError, "empty", "without an image"),
        ("bad_key", openai.APIStatusError, "auth", "not valid"),
    ],
)
async def test_gemini_failures_reach_the_client_as_their_kind(
    openai_client: MakeClient,
    gateway: str,
    gemini: FakeGemini,
    scenario: str,
    error_class: type[openai.APIStatusError],
    code: str,
    fragment: str,
) -> None:
    gemini.set_mode(scenario)
    with pytest.raises(error_class) as caught:
        await openai_client(gateway).images.generate(model="flash", prompt="a fox")
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == code
    assert fragment in body["message"]
    assert body["attempts"][0]["deployment"] == "flash"


async def test_quota_zero_is_not_retried_on_the_same_key(
    openai_client: MakeClient, gateway: str, gemini: FakeGemini
) -> None:
    gemini.set_mode("quota_zero")
    with pytest.raises(openai.RateLimitError):
        await openai_client(gateway).images.generate(model="flash", prompt="a fox")
    assert len(gemini.requests) == 1


async def test_broken_upstream_answer_after_the_header_is_a_truncated_body_not_a_success(
    openai_client: MakeClient, gateway: str, gemini: FakeGemini
) -> None:
    gemini.set_mode("truncated")
    with pytest.raises((openai.APIConnectionError, openai.APIResponseValidationError, ValueError)):
        result = await openai_client(gateway).images.generate(model="flash", prompt="a fox")
        decode_image(result.data[0].b64_json or "")  # type: ignore[index]
    gemini.clear()
    result = await openai_client(gateway).images.generate(model="flash", prompt="a fox")
    assert result.data is not None and result.data[0].b64_json
