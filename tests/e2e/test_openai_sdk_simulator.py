"""The official openai SDK against a running gateway on the built-in simulator."""

from __future__ import annotations

import base64

import aiohttp
import openai
import pytest

from tests.conftest import SIM_CONFIG, MakeClient, StartGateway
from tests.e2e.helpers import decode_image


@pytest.mark.parametrize("size", ["1024x1024", "1536x1024", "1024x1536"])
async def test_generate_returns_png_of_the_asked_size(
    openai_client: MakeClient, sim_gateway: str, size: str
) -> None:
    result = await openai_client(sim_gateway).images.generate(
        model="sim-image",
        prompt="a red bicycle",
        size=size,  # type: ignore[arg-type]
    )
    assert result.data is not None
    image = decode_image(result.data[0].b64_json or "")
    assert (image.format, f"{image.width}x{image.height}") == ("PNG", size)
    assert result.size == size and result.output_format == "png"


async def test_n_quality_format_and_background_are_honoured(
    openai_client: MakeClient, sim_gateway: str
) -> None:
    result = await openai_client(sim_gateway).images.generate(
        model="sim-image",
        prompt="two kites",
        n=2,
        quality="high",
        output_format="webp",
        background="transparent",
        response_format="b64_json",
    )
    assert result.data is not None and len(result.data) == 2
    images = [decode_image(d.b64_json or "") for d in result.data]
    assert [i.format for i in images] == ["WEBP", "WEBP"]
    assert images[0].mode == "RGBA" and images[0].getchannel("A").getextrema()[0] == 0
    assert images[0].tobytes() != images[1].tobytes()  # two different images, not one twice


async def test_url_response_serves_the_image_at_an_expiring_url(
    openai_client: MakeClient, sim_gateway: str
) -> None:
    result = await openai_client(sim_gateway).images.generate(
        model="sim-image", prompt="a lighthouse", size="1536x1024", response_format="url"
    )
    assert result.data is not None
    url = result.data[0].url or ""
    assert "/v1/images/files/" in url and "sig=" in url and "expires=" in url
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200 and response.content_type == "image/png"
            image = decode_image(base64.b64encode(await response.read()).decode())
            assert image.size == (1536, 1024)
        forged = url.replace("sig=", "sig=0")
        async with session.get(forged) as response:
            assert response.status == 403


async def test_models_list_names_the_routes(openai_client: MakeClient, sim_gateway: str) -> None:
    models = await openai_client(sim_gateway).models.list()
    assert {m.id for m in models.data} == {"sim-image", "sim-fallback", "sim-dead"}


async def test_fallback_to_the_second_candidate_is_reported(
    openai_client: MakeClient, sim_gateway: str
) -> None:
    raw = await openai_client(sim_gateway).images.with_raw_response.generate(
        model="sim-fallback", prompt="a boat"
    )
    assert raw.headers["x-imagegate-deployment"] == "sim-default"
    assert raw.headers["x-imagegate-attempts"] == "2"
    assert raw.headers["x-request-id"]
    decode_image(raw.parse().data[0].b64_json or "")  # type: ignore[index]


async def test_all_candidates_failing_gives_the_kind_and_every_attempt(
    openai_client: MakeClient, sim_gateway: str
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await openai_client(sim_gateway).images.generate(model="sim-dead", prompt="a boat")
    assert caught.value.status_code == 503
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unavailable"
    assert [a["deployment"] for a in error["attempts"]] == ["sim-broken", "sim-broken"]


async def test_client_keys_are_required_when_configured(
    openai_client: MakeClient, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CLIENT_KEY", "sk-test-right-key-123")
    base = await start_gateway(
        {**SIM_CONFIG, "auth": {"keys": [{"name": "app", "key_env": "TEST_CLIENT_KEY"}]}}
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        await openai_client(base, "sk-wrong-key-0000").images.generate(
            model="sim-image", prompt="x"
        )
    assert "sk-...0000" in str(caught.value) and "wrong" not in str(caught.value)
    result = await openai_client(base, "sk-test-right-key-123").images.generate(
        model="sim-image", prompt="x"
    )
    assert result.data


async def test_stream_true_sends_one_completed_event_per_image(
    openai_client: MakeClient, sim_gateway: str
) -> None:
    stream = await openai_client(sim_gateway).images.generate(
        model="sim-image", prompt="a kite", n=2, size="1024x1536", stream=True
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == ["image_generation.completed"] * 2
    for event in events:
        assert decode_image(event.b64_json).size == (1024, 1536)  # type: ignore[union-attr]
