"""Streaming with partial images, through the official openai SDK: the partials reach the
client while the upstream is still working, then the completed image; failures after the
first partial arrive as an error event the SDK raises."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio

from tests.conftest import MakeClient, StartGateway
from tests.e2e.helpers import decode_image
from tests.fakes.openai import FakeOpenAI

KEY = "sk-partials"
GAP = 0.4  # the fake waits this long before each event after the first


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(keys={KEY}) as server:
        server.stream_gap_seconds = GAP
        yield server


@pytest.fixture
async def base(
    start_gateway: StartGateway, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setenv("PARTIAL_KEY", KEY)
    config: dict[str, Any] = {
        "providers": {
            "oa": {"kind": "openai", "base_url": f"{fake.base_url}/v1", "keys": ["PARTIAL_KEY"]}
        },
        "deployments": {"gpt": {"provider": "oa", "model": "gpt-image-1.5"}},
        "routes": {"gpt": ["gpt"]},
    }
    return await start_gateway(config)


async def test_partials_arrive_as_the_upstream_sends_them_then_the_image(
    base: str, openai_client: MakeClient, fake: FakeOpenAI
) -> None:
    started = time.monotonic()
    stream = await openai_client(base).images.generate(
        model="gpt", prompt="a lighthouse", size="1536x1024", stream=True, partial_images=2
    )
    seen: list[tuple[str, float]] = []
    async for event in stream:
        seen.append((event.type, time.monotonic() - started))
        if event.type == "image_generation.partial_image":
            assert decode_image(event.b64_json).size == (1536, 1024)
        else:
            assert event.type == "image_generation.completed"
            assert decode_image(event.b64_json).size == (1536, 1024)
    kinds = [kind for kind, _ in seen]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    # the first partial came before the upstream had finished (two more gaps to go)
    first_partial, completed = seen[0][1], seen[-1][1]
    assert completed - first_partial >= 1.5 * GAP
    sent = fake.requests[-1].json
    assert sent is not None and sent["stream"] is True and sent["partial_images"] == 2


async def test_without_stream_partial_images_are_not_asked_upstream(
    base: str, openai_client: MakeClient, fake: FakeOpenAI
) -> None:
    result = await openai_client(base).images.generate(
        model="gpt", prompt="a lighthouse", extra_body={"partial_images": 2}
    )
    assert result.data and result.data[0].b64_json
    sent = fake.requests[-1].json
    assert sent is not None and "stream" not in sent and "partial_images" not in sent


async def test_a_stream_without_partials_is_answered_when_done(
    base: str, openai_client: MakeClient, fake: FakeOpenAI
) -> None:
    stream = await openai_client(base).images.generate(
        model="gpt", prompt="a lighthouse", stream=True
    )
    kinds = [event.type async for event in stream]
    assert kinds == ["image_generation.completed"]


async def test_an_upstream_failure_before_any_partial_is_a_plain_error(
    base: str, openai_client: MakeClient, fake: FakeOpenAI
) -> None:
    fake.set_mode("moderation_blocked")
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(base).images.generate(
            model="gpt", prompt="a lighthouse", stream=True, partial_images=1
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "safety"


async def test_azure_streams_partials_and_relays_answer_whole(
    start_gateway: StartGateway, openai_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.aggregator import FakeAggregator
    from tests.fakes.azure_openai import FakeAzureOpenAI

    monkeypatch.setenv("PARTIAL_KEY", KEY)
    async with (
        FakeAzureOpenAI(keys={KEY}, deployments={"img": "gpt-image-1.5"}) as azure,
        FakeAggregator(keys={KEY}) as relay,
    ):
        base = await start_gateway(
            {
                "providers": {
                    "az": {
                        "kind": "azure-openai",
                        "base_url": azure.base_url,
                        "keys": ["PARTIAL_KEY"],
                    },
                    "relay": {
                        "kind": "openai-compatible",
                        "base_url": f"{relay.base_url}/v1",
                        "keys": ["PARTIAL_KEY"],
                    },
                },
                "deployments": {
                    "az": {
                        "provider": "az",
                        "model": "gpt-image-1.5",
                        "options": {"azure_deployment": "img"},
                    },
                    "relay": {"provider": "relay", "model": "gpt-image-1.5"},
                },
                "routes": {"az": ["az"], "relay": ["relay"]},
            }
        )
        client = openai_client(base)
        azure_events = [
            e.type
            async for e in await client.images.generate(
                model="az", prompt="x", stream=True, partial_images=1
            )
        ]
        assert azure_events == ["image_generation.partial_image", "image_generation.completed"]
        relay_events = [
            e.type
            async for e in await client.images.generate(
                model="relay", prompt="x", stream=True, partial_images=1
            )
        ]
        assert relay_events == ["image_generation.completed"]
        sent = relay.requests[-1].json
        assert sent is not None and "stream" not in sent and "partial_images" not in sent
