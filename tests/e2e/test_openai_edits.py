"""The official openai SDK's `images.edit` → gateway → fake OpenAI, fake Gemini and the simulator.

What each upstream receives is checked in its own convention: OpenAI gets the client's mask byte
for byte (alpha 0 = edit); Gemini gets the images as inlineData parts and the mask as a black and
white image (white = edit), and the answer keeps the input's pixels outside the mask.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
from PIL import Image

from tests.conftest import MakeClient, StartGateway
from tests.e2e.helpers import decode_image
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import UploadedFile

GEMINI_KEY, OPENAI_KEY, CLIENT_KEY = "gemini-test-key", "sk-openai-test-key", "ig_test_client"
SIDE = 1024
GREEN = (10, 200, 10)
EDIT_BOX = (0, 0, SIDE // 2, SIDE)  # the left half is transparent in the mask: edit it


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PHOTO = png(Image.new("RGB", (SIDE, SIDE), GREEN))
PHOTO_2 = png(Image.new("RGB", (SIDE, SIDE), (200, 10, 10)))


def mask_png(size: tuple[int, int] = (SIDE, SIDE)) -> bytes:
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), EDIT_BOX)
    return png(image)


MASK = mask_png()


def upload(data: bytes, name: str = "photo.png") -> tuple[str, bytes, str]:
    return (name, data, "image/png")


@pytest_asyncio.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(keys={GEMINI_KEY}) as fake:
        yield fake


@pytest_asyncio.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(keys={OPENAI_KEY}) as fake:
        yield fake


def config(gemini: FakeGemini, openai_fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {
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
            "sim": {"kind": "simulator"},
        },
        "deployments": {
            "flash": {"provider": "google", "model": "gemini-2.5-flash-image"},
            "pro": {"provider": "google", "model": "gemini-3-pro-image-preview"},
            "gpt": {"provider": "oa", "model": "gpt-image-1.5"},
            "sim": {
                "provider": "sim",
                "model": "sim-image",
                "price": {"per_image": 0.04, "per_input_image": 0.01},
            },
        },
        "routes": {"flash": ["flash"], "pro": ["pro"], "gpt": ["gpt"], "sim": ["sim"]},
        **extra,
    }


@pytest.fixture
def upstream_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_GEMINI_KEY", GEMINI_KEY)
    monkeypatch.setenv("TEST_OPENAI_KEY", OPENAI_KEY)


@pytest.fixture
async def gateway(
    start_gateway: StartGateway, gemini: FakeGemini, openai_fake: FakeOpenAI, upstream_keys: None
) -> str:
    return await start_gateway(config(gemini, openai_fake))


def file_field(value: Any) -> UploadedFile:
    assert isinstance(value, UploadedFile)
    return value


# --- served edits -----------------------------------------------------------------------------


async def test_one_image_and_mask_to_openai_arrive_byte_for_byte(
    openai_client: MakeClient, gateway: str, openai_fake: FakeOpenAI
) -> None:
    result = await openai_client(gateway).images.edit(
        model="gpt",
        image=upload(PHOTO),
        mask=upload(MASK, "mask.png"),
        prompt="a red hat on the left",
        size="1024x1024",
        input_fidelity="high",
    )
    assert result.data is not None
    assert decode_image(result.data[0].b64_json or "").size == (SIDE, SIDE)
    sent = openai_fake.requests[-1]
    assert sent.path == "/v1/images/edits" and sent.scenario == "ok"
    assert file_field(sent.form["image"][0]).data == PHOTO
    assert file_field(sent.form["mask"][0]).data == MASK  # OpenAI's convention: as the client sent
    assert sent.form["model"] == ["gpt-image-1.5"] and sent.form["size"] == ["1024x1024"]
    assert sent.form["input_fidelity"] == ["high"]


async def test_two_images_to_openai_are_repeated_image_brackets(
    openai_client: MakeClient, gateway: str, openai_fake: FakeOpenAI
) -> None:
    result = await openai_client(gateway).images.edit(
        model="gpt",
        image=[upload(PHOTO, "a.png"), upload(PHOTO_2, "b.png")],
        prompt="put them side by side",
        size="1536x1024",
    )
    assert result.data is not None
    assert decode_image(result.data[0].b64_json or "").size == (1536, 1024)
    sent = openai_fake.requests[-1]
    assert [file_field(f).data for f in sent.form["image[]"]] == [PHOTO, PHOTO_2]
    assert "mask" not in sent.form


async def test_one_image_and_mask_to_gemini_keep_the_unmasked_pixels(
    openai_client: MakeClient, gateway: str, gemini: FakeGemini
) -> None:
    raw = await openai_client(gateway).images.with_raw_response.edit(
        model="flash",
        image=upload(PHOTO),
        mask=upload(MASK, "mask.png"),
        prompt="a red hat on the left",
        size="1024x1024",
    )
    assert "mask applied" in raw.headers["x-imagegate-notes"]
    data = raw.parse().data
    assert data is not None
    image = decode_image(data[0].b64_json or "").convert("RGB")
    assert image.size == (SIDE, SIDE)
    assert image.getpixel((SIDE - 5, 5)) == GREEN  # outside the mask: the client's pixels
    assert image.getpixel((5, 5)) != GREEN  # inside: what the model drew

    parts = gemini.requests[-1].json["contents"][0]["parts"]  # type: ignore[index]
    assert parts[0] == {"text": "a red hat on the left"}
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == PHOTO
    assert "white marks the region to edit" in parts[2]["text"]
    sent_mask = Image.open(io.BytesIO(base64.b64decode(parts[3]["inlineData"]["data"])))
    assert sent_mask.mode == "L" and sent_mask.size == (SIDE, SIDE)
    assert set(sent_mask.tobytes()) == {0, 255}  # black and white only
    assert sent_mask.getpixel((5, 5)) == 255 and sent_mask.getpixel((SIDE - 5, 5)) == 0


async def test_two_images_to_gemini_are_inline_data_parts(
    openai_client: MakeClient, gateway: str, gemini: FakeGemini
) -> None:
    result = await openai_client(gateway).images.edit(
        model="pro",
        image=[upload(PHOTO, "a.png"), upload(PHOTO_2, "b.png")],
        prompt="put them side by side",
        size="1536x1024",
    )
    assert result.data is not None
    image = decode_image(result.data[0].b64_json or "")
    assert abs(image.width / image.height - 1.5) < 0.03
    parts = gemini.requests[-1].json["contents"][0]["parts"]  # type: ignore[index]
    assert [base64.b64decode(p["inlineData"]["data"]) for p in parts[1:]] == [PHOTO, PHOTO_2]
    config = gemini.requests[-1].json["generationConfig"]  # type: ignore[index]
    assert config["imageConfig"]["aspectRatio"] == "3:2"


async def test_simulator_edits_inside_the_mask_only_and_prices_input_images(
    openai_client: MakeClient, gateway: str
) -> None:
    raw = await openai_client(gateway).images.with_raw_response.edit(
        model="sim",
        image=[upload(PHOTO, "a.png"), upload(PHOTO_2, "b.png")],
        mask=upload(MASK, "mask.png"),
        prompt="a hat",
    )
    assert raw.headers["x-imagegate-cost-usd"] == "0.06"  # 0.04 per image + 2 × 0.01 per input
    data = raw.parse().data
    assert data is not None
    image = decode_image(data[0].b64_json or "").convert("RGB")
    assert image.size == (SIDE, SIDE)  # size auto: the first input's
    inside = [image.getpixel((x, y)) for x in range(0, SIDE // 2, 64) for y in range(0, SIDE, 64)]
    assert all(image.getpixel((x, 7)) == GREEN for x in range(SIDE // 2, SIDE, 16))
    assert GREEN not in inside


async def test_edit_streams_image_edit_events(openai_client: MakeClient, gateway: str) -> None:
    stream = await openai_client(gateway).images.edit(
        model="sim", image=upload(PHOTO), prompt="a hat", size="512x512", stream=True
    )
    events = [event async for event in stream]
    assert [event.type for event in events] == ["image_edit.completed"]
    assert decode_image(events[0].b64_json).size == (512, 512)


async def test_json_form_with_data_urls_is_sent_upstream_as_multipart(
    gateway: str, openai_fake: FakeOpenAI
) -> None:
    def data_url(data: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(data).decode()

    body = {
        "model": "gpt",
        "prompt": "a hat",
        "images": [{"image_url": data_url(PHOTO)}, {"image_url": data_url(PHOTO_2)}],
        "mask": {"image_url": data_url(MASK)},
        "size": "1024x1024",
        "n": 2,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway}/v1/images/edits", json=body) as response,
    ):
        answer = await response.json()
    assert response.status == 200, answer
    assert [decode_image(item["b64_json"]).size for item in answer["data"]] == [(SIDE, SIDE)] * 2
    sent = openai_fake.requests[-1]
    assert [file_field(f).data for f in sent.form["image[]"]] == [PHOTO, PHOTO_2]
    assert file_field(sent.form["mask"][0]).data == MASK and sent.form["n"] == ["2"]


# --- refusals ---------------------------------------------------------------------------------


async def assert_still_serving(make: MakeClient, base: str, key: str = "unused") -> None:
    result = await make(base, key).images.edit(
        model="gpt", image=upload(PHOTO), mask=upload(MASK), prompt="still alive?"
    )
    assert result.data and decode_image(result.data[0].b64_json or "").size == (SIDE, SIDE)


NOT_AN_IMAGE = ("notes.txt", b"these are my notes, not a picture", "text/plain")


@pytest.mark.parametrize(
    ("call", "param", "fragment"),
    [
        (
            {"image": upload(PHOTO), "mask": upload(mask_png((512, 512)))},
            "mask",
            "512x512 but the first image is 1024x1024",
        ),
        ({"image": upload(PHOTO), "mask": upload(PHOTO)}, "mask", "alpha channel"),
        ({"image": NOT_AN_IMAGE}, "image", "`image` is not a usable image"),
        ({"image": [upload(PHOTO), NOT_AN_IMAGE]}, "image[1]", "`image[1]` is not a usable image"),
        ({"image": [upload(PHOTO)] * 17}, "image", "at most 16 images"),
        ({"image": upload(PHOTO), "quality": "hd"}, "quality", "hd"),
        ({"image": upload(PHOTO), "size": "big"}, "size", "WIDTHxHEIGHT"),
    ],
    ids=["mask-size", "mask-no-alpha", "non-image", "second-non-image", "17-images", "hd", "size"],
)
async def test_bad_input_is_a_bad_request_naming_the_field(
    openai_client: MakeClient,
    gateway: str,
    openai_fake: FakeOpenAI,
    call: dict[str, Any],
    param: str,
    fragment: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(gateway).images.edit(model="gpt", prompt="a hat", **call)
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == param, body
    assert fragment in body["message"]
    assert not openai_fake.requests  # refused before any upstream call
    await assert_still_serving(openai_client, gateway)


async def test_unknown_model_is_not_found(openai_client: MakeClient, gateway: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await openai_client(gateway).images.edit(
            model="dall-e-9", image=upload(PHOTO), prompt="a hat"
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    assert "dall-e-9" in body["message"] and "gpt" in body["message"]
    await assert_still_serving(openai_client, gateway)


async def test_wrong_client_key_is_an_authentication_error(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    gemini: FakeGemini,
    openai_fake: FakeOpenAI,
    upstream_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_CLIENT_KEY", CLIENT_KEY)
    auth = {"keys": [{"name": "app", "key_env": "TEST_CLIENT_KEY"}]}
    base = await start_gateway(config(gemini, openai_fake, auth=auth))
    with pytest.raises(openai.AuthenticationError) as caught:
        await openai_client(base, "ig_wrong").images.edit(
            model="gpt", image=upload(PHOTO), mask=upload(MASK), prompt="a hat"
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "invalid_api_key"
    assert not openai_fake.requests
    await assert_still_serving(openai_client, base, CLIENT_KEY)


async def test_more_images_than_the_route_takes_names_the_field(
    openai_client: MakeClient, gateway: str, gemini: FakeGemini
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(gateway).images.edit(
            model="flash", image=[upload(PHOTO)] * 4, prompt="a hat"
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "image"
    assert "at most 3 input images" in body["message"]
    assert not gemini.requests
    await assert_still_serving(openai_client, gateway)


async def test_uploads_over_their_limits_are_413_naming_the_field(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    gemini: FakeGemini,
    openai_fake: FakeOpenAI,
    upstream_keys: None,
) -> None:
    base = await start_gateway(config(gemini, openai_fake, server={"max_body_mb": 6}))
    big_mask = MASK + b"\0" * (4 * 1024 * 1024)  # a PNG with 4 MB of trailing bytes
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_client(base).images.edit(
            model="gpt", image=upload(PHOTO), mask=upload(big_mask), prompt="a hat"
        )
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "mask"
    big_photo = PHOTO + b"\0" * (7 * 1024 * 1024)  # over the whole request's 6 MB
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_client(base).images.edit(
            model="gpt", image=[upload(PHOTO), upload(big_photo)], prompt="a hat"
        )
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict) and "6 MB" in caught.value.body["message"]
    assert not openai_fake.requests
    await assert_still_serving(openai_client, base)


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ({"image_url": "https://example.com/a.png"}, "does not fetch client URLs"),
        ({"file_id": "file-abc"}, "no Files API"),
        ({"image_url": "data:image/png;base64,!!!"}, "valid base64"),
    ],
)
async def test_json_refs_the_gateway_cannot_take_name_the_field(
    gateway: str, ref: dict[str, str], fragment: str
) -> None:
    body = {"model": "gpt", "prompt": "a hat", "images": [ref]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway}/v1/images/edits", json=body) as response,
    ):
        error = (await response.json())["error"]
    assert response.status == 400 and error["param"] == "images[0]"
    assert fragment in error["message"]


async def test_indexed_image_fields_are_taken_in_order(
    gateway: str, openai_fake: FakeOpenAI
) -> None:
    form = aiohttp.FormData()
    form.add_field("model", "gpt")
    form.add_field("prompt", "a hat")
    form.add_field("image[0]", PHOTO, filename="a.png", content_type="image/png")
    form.add_field("image[1]", PHOTO_2, filename="b.png", content_type="application/octet-stream")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway}/v1/images/edits", data=form) as response,
    ):
        assert response.status == 200, await response.text()
    sent = openai_fake.requests[-1]
    images = [file_field(f) for f in sent.form["image[]"]]
    assert [f.data for f in images] == [PHOTO, PHOTO_2]
    assert [f.content_type for f in images] == ["image/png", "image/png"]  # by the bytes


async def test_a_chunked_body_is_cut_off_at_the_gateways_limit(
    start_gateway: StartGateway, gemini: FakeGemini, openai_fake: FakeOpenAI, upstream_keys: None
) -> None:
    base = await start_gateway(config(gemini, openai_fake, server={"max_body_mb": 1}))

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: only counting can stop it
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(64):
            yield b"\0" * 65536

    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/v1/images/edits", data=body(), headers=headers) as response,
    ):
        error = (await response.json())["error"]
    assert response.status == 413 and error["param"] == "image"
    assert "limit of 1 MB" in error["message"]
