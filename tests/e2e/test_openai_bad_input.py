"""Every bad input gets a precise error in OpenAI's shape, and the next request is served."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import SIM_CONFIG, MakeClient, StartGateway


async def assert_still_serving(make: MakeClient, base: str) -> None:
    result = await make(base).images.generate(model="sim-image", prompt="still alive?")
    assert result.data and result.data[0].b64_json


@pytest.mark.parametrize(
    ("params", "param", "fragment"),
    [
        ({"size": "big"}, "size", "WIDTHxHEIGHT"),
        ({"size": "0x0"}, "size", "between"),
        ({"size": "8000x100"}, "size", "aspect"),
        ({"n": 0}, "n", "greater than or equal to 1"),
        ({"n": 11}, "n", "less than or equal to 10"),
        ({"prompt": "   "}, "prompt", "must not be empty"),
        ({"prompt": "x" * 32001}, "prompt", "maximum is 32000"),
        ({"quality": "ultra"}, "quality", "ultra"),
        ({"output_format": "bmp"}, "output_format", "bmp"),
        ({"output_compression": 50}, "output_compression", "jpeg or webp"),
        ({"extra_body": {"colour": "red"}}, "colour", "Unrecognized request argument"),
    ],
)
async def test_invalid_parameters_are_named(
    openai_client: MakeClient, sim_gateway: str, params: dict[str, Any], param: str, fragment: str
) -> None:
    call: dict[str, Any] = {"model": "sim-image", "prompt": "a cat", **params}
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(sim_gateway).images.generate(**call)
    error = caught.value
    assert error.status_code == 400
    assert isinstance(error.body, dict) and error.body["param"] == param
    assert fragment in error.body["message"]
    await assert_still_serving(openai_client, sim_gateway)


async def test_unknown_model_is_404_model_not_found_listing_models(
    openai_client: MakeClient, sim_gateway: str
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await openai_client(sim_gateway).images.generate(model="dall-e-9", prompt="a cat")
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    assert "dall-e-9" in body["message"] and "sim-image" in body["message"]
    await assert_still_serving(openai_client, sim_gateway)


async def test_size_no_candidate_supports_names_the_field(
    openai_client: MakeClient, start_gateway: StartGateway
) -> None:
    config = {
        "providers": {"oa": {"kind": "openai", "keys": ["IMAGEGATE_TEST_UNUSED_KEY"]}},
        "deployments": {"gpt": {"provider": "oa", "model": "gpt-image-1.5"}},
        "routes": {"gpt": ["gpt"]},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMAGEGATE_TEST_UNUSED_KEY", "sk-unused")
        base = await start_gateway(config)
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(base).images.generate(model="gpt", prompt="a cat", size="1792x1024")
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "size"
    assert "1536x1024" in body["message"]  # says what the deployment does offer


async def raw_post(base: str, data: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base}/v1/images/generations", data=data, headers={"Content-Type": content_type}
        ) as response,
    ):
        return response.status, await response.json()


async def test_malformed_json_wrong_type_and_oversized_body(
    openai_client: MakeClient, start_gateway: StartGateway
) -> None:
    base = await start_gateway({**SIM_CONFIG, "server": {"max_body_mb": 0.01}})
    status, body = await raw_post(base, b'{"model": "sim-image", "prompt": ', "application/json")
    assert status == 400 and "could not parse the JSON body" in body["error"]["message"]
    status, body = await raw_post(base, b"model=sim-image", "application/x-www-form-urlencoded")
    assert status == 400 and body["error"]["param"] == "Content-Type"
    status, body = await raw_post(base, b'{"prompt":"' + b"y" * 20_000 + b'"}', "application/json")
    assert status == 413 and "0.01 MB" in body["error"]["message"]
    status, body = await raw_post(base, b"[1, 2]", "application/json")
    assert status == 400 and "JSON object" in body["error"]["message"]
    await assert_still_serving(openai_client, base)


async def test_missing_key_when_keys_are_required_is_401(
    start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch, openai_client: MakeClient
) -> None:
    monkeypatch.setenv("TEST_CLIENT_KEY", "sk-test-right-key-123")
    base = await start_gateway(
        {**SIM_CONFIG, "auth": {"keys": [{"name": "app", "key_env": "TEST_CLIENT_KEY"}]}}
    )
    status, body = await raw_post(base, b'{"model":"sim-image","prompt":"x"}', "application/json")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        await openai_client(base, "sk-wrong").models.list()


async def test_unknown_path_and_method_answer_json_errors(sim_gateway: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim_gateway}/v1/nothing-here") as response:
            assert response.status == 404
            assert "Unknown path" in (await response.json())["error"]["message"]
        async with session.get(f"{sim_gateway}/v1/images/generations") as response:
            assert response.status == 405
            assert (await response.json())["error"]["message"]
