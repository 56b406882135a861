"""Capabilities drive routing: a request with 14 reference images, a 4K size or a mask goes
only to a deployment that can serve it; when none can, the error names the field.

Route `image` tries, in order: Gemini 2.5 Flash Image (≤ 3 input images, 1K only, mask by the
gateway), Gemini 3 Pro Image (14 images, up to 4K) and FLUX.2 on BFL (8 images, ≤ 4 MP, no
mask). Driven with the official openai SDK against the fakes.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from PIL import Image

from tests.conftest import MakeClient, StartGateway
from tests.e2e.helpers import decode_image
from tests.fakes.bfl import FakeBfl
from tests.fakes.gemini import FakeGemini

KEY = "routing-key"


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@pytest_asyncio.fixture
async def fakes() -> AsyncIterator[tuple[FakeGemini, FakeBfl]]:
    async with FakeGemini(keys={KEY}) as gm, FakeBfl(keys={KEY}) as bfl:
        yield gm, bfl


@pytest.fixture
async def base(
    start_gateway: StartGateway,
    fakes: tuple[FakeGemini, FakeBfl],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    gm, bfl = fakes
    monkeypatch.setenv("ROUTING_KEY", KEY)
    config: dict[str, Any] = {
        "providers": {
            "google": {
                "kind": "gemini",
                "base_url": f"{gm.base_url}/v1beta",
                "keys": ["ROUTING_KEY"],
            },
            "bfl": {
                "kind": "bfl",
                "base_url": bfl.base_url,
                "keys": ["ROUTING_KEY"],
                "options": {"poll_seconds": 0.02},
            },
        },
        "deployments": {
            "flash": {"provider": "google", "model": "gemini-2.5-flash-image"},
            "pro": {"provider": "google", "model": "gemini-3-pro-image-preview"},
            "flux": {"provider": "bfl", "model": "flux-2-pro"},
        },
        "routes": {"image": ["flash", "pro", "flux"], "cheap": ["flash", "flux"]},
    }
    return await start_gateway(config)


async def test_fourteen_reference_images_go_to_the_model_that_takes_them(
    base: str, openai_client: MakeClient, fakes: tuple[FakeGemini, FakeBfl]
) -> None:
    gm, bfl = fakes
    images = [("ref.png", png((i * 17 % 256, 80, 160)), "image/png") for i in range(14)]
    raw = await openai_client(base).images.with_raw_response.edit(
        model="image", prompt="combine them", image=images
    )
    assert raw.parse().data
    assert raw.headers["x-imagegate-deployment"] == "pro"
    [sent] = [r for r in gm.requests if r.json]
    parts = sent.json["contents"][0]["parts"]  # type: ignore[index]
    assert sum(1 for p in parts if "inlineData" in p or "inline_data" in p) == 14
    assert "gemini-3-pro-image-preview" in sent.path and bfl.requests == []


async def test_a_4k_size_skips_the_1k_only_model(
    base: str, openai_client: MakeClient, fakes: tuple[FakeGemini, FakeBfl]
) -> None:
    gm, _ = fakes
    raw = await openai_client(base).images.with_raw_response.generate(
        model="image",
        prompt="a harbour",
        size="3840x2160",  # type: ignore[arg-type]
    )
    image = decode_image(raw.parse().data[0].b64_json or "")  # type: ignore[index]
    assert raw.headers["x-imagegate-deployment"] == "pro"
    assert image.width >= 3840 and abs(image.width / image.height - 16 / 9) < 0.03
    assert all("gemini-2.5" not in r.path for r in gm.requests)


async def test_when_no_candidate_can_serve_a_field_the_error_names_it(
    base: str, openai_client: MakeClient, fakes: tuple[FakeGemini, FakeBfl]
) -> None:
    gm, bfl = fakes
    images = [("ref.png", png((i, 10, 10)), "image/png") for i in range(14)]
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(base).images.edit(model="cheap", prompt="x", image=images)
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "image"
    assert "flash offers at most 3 input images" in body["message"]
    assert "flux offers at most 8 input images" in body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(base).images.generate(model="cheap", prompt="x", size="3840x2160")  # type: ignore[arg-type]
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "size"
    assert gm.requests == [] and bfl.requests == []


async def test_a_mask_never_goes_to_a_deployment_without_one(
    base: str, openai_client: MakeClient, fakes: tuple[FakeGemini, FakeBfl]
) -> None:
    gm, bfl = fakes
    gm.set_mode("unavailable")  # both Gemini deployments fail: flux would be next, but no mask
    mask = io.BytesIO()
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    transparent.paste((0, 0, 0, 0), (0, 0, 32, 64))
    transparent.save(mask, "PNG")
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_client(base).images.edit(
            model="image",
            prompt="a hat",
            image=("photo.png", png((200, 40, 40)), "image/png"),
            mask=("mask.png", mask.getvalue(), "image/png"),
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "unavailable"
    assert bfl.requests == []  # FLUX.2 takes no mask: it was never a candidate for this request
