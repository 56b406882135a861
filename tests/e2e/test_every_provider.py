"""The same request through a route of every provider, with the official openai SDK.

Each provider runs against its own fake upstream. For each: 1536x1024, n=2, png comes back as
two PNG images of aspect 3:2; a size the provider cannot make is refused naming `size`, with no
upstream call; an upstream answering 1024x1024 to a wide request is caught as `mismatch`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio

from tests.conftest import MakeClient, StartGateway
from tests.e2e.every_provider_entries import ENTRIES, Entry
from tests.e2e.helpers import decode_image
from tests.fakes.server import FakeUpstream

KEY = "every-provider-key"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVERY_KEY", KEY)


@pytest_asyncio.fixture(params=ENTRIES, ids=[e.id for e in ENTRIES])
async def served(
    request: pytest.FixtureRequest, start_gateway: StartGateway
) -> AsyncIterator[tuple[Entry, FakeUpstream, str]]:
    entry: Entry = request.param
    fake = entry.make_fake()
    await fake.start()
    if entry.prepare is not None:
        entry.prepare(fake)
    try:
        provider: dict[str, Any] = {
            "kind": entry.kind,
            "base_url": fake.base_url + entry.base_path,
            "options": entry.provider_options,
        }
        if not entry.keyless:
            provider["keys"] = ["EVERY_KEY"]
        config = {
            "providers": {"up": provider},
            "deployments": {
                "dep": {"provider": "up", "model": entry.model, "options": entry.options}
            },
            "routes": {"image": ["dep"]},
        }
        yield entry, fake, await start_gateway(config)
    finally:
        await fake.stop()


async def test_1536x1024_n2_png_gives_two_images_of_that_aspect(
    served: tuple[Entry, FakeUpstream, str], openai_client: MakeClient
) -> None:
    entry, fake, base = served
    if not entry.makes_3_2:
        with pytest.raises(openai.BadRequestError) as caught:
            await openai_client(base).images.generate(
                model="image", prompt="a lighthouse", size="1536x1024", n=2, output_format="png"
            )
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "size"
        assert fake.served == 0
        return
    raw = await openai_client(base).images.with_raw_response.generate(
        model="image", prompt="a lighthouse", size="1536x1024", n=2, output_format="png"
    )
    result = raw.parse()
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        image = decode_image(item.b64_json or "")
        assert image.format == "PNG"
        assert abs(image.width / image.height - 1.5) < 0.03, (entry.id, image.size)
    assert raw.headers["x-imagegate-provider"] == entry.kind


async def test_a_size_the_provider_cannot_make_is_refused_naming_size(
    served: tuple[Entry, FakeUpstream, str], openai_client: MakeClient
) -> None:
    _, fake, base = served
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(base).images.generate(model="image", prompt="x", size="3000x300")  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "size"
    assert fake.served == 0


async def test_a_square_image_for_a_wide_request_is_a_mismatch(
    served: tuple[Entry, FakeUpstream, str], openai_client: MakeClient
) -> None:
    entry, fake, base = served
    if not entry.can_misbehave:
        pytest.skip(f"{entry.id} has no upstream that could send the wrong size")
    fake.set_mode("wrong_size")
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_client(base).images.generate(model="image", prompt="x", size=entry.wide)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "mismatch", body
