"""Gemini edits: inlineData parts after the prompt; a mask as instruction + black/white image, then
pasted back so pixels outside it are the input's own (docs/editing.md)."""

from __future__ import annotations

import base64
import io
from typing import Any

import orjson
import pytest
from PIL import Image

from imagegate.core.deployment import Deployment
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import Size
from imagegate.core.payload import HeldB64, decode
from imagegate.core.request import ImageRequest, InputImage
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.providers.gemini import build_request, capabilities_for
from imagegate.providers.gemini_mask import (
    APPLIED_NOTE,
    MASK_INSTRUCTION,
    NO_ROOM_NOTE,
    keep_unmasked,
)


def encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def picture(size: tuple[int, int] = (64, 32), colour: tuple[int, int, int] = (200, 0, 0)) -> bytes:
    return encode(Image.new("RGB", size, colour))


def mask_for(size: tuple[int, int] = (64, 32)) -> bytes:
    """Opaque, with the left half fully transparent: edit the left half."""
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    return encode(image)


def body_for(model: str, request: ImageRequest) -> dict[str, Any]:
    deployment = Deployment("d", "g", "gemini", model, "https://example.test/v1beta")
    _, body = build_request(request, deployment)
    parsed: dict[str, Any] = orjson.loads(body)
    return parsed


def edit(count: int = 1, *, mask: bool = False, **fields: Any) -> ImageRequest:
    images = tuple(InputImage(picture(), "image/png") for _ in range(count))
    return ImageRequest(
        prompt="make it blue",
        model="r",
        input_images=images,
        mask=InputImage(mask_for(), "image/png") if mask else None,
        **fields,
    )


def test_input_images_follow_the_prompt_as_inline_data() -> None:
    request = edit(2, size=Size(1024, 1024))
    parts = body_for("gemini-3-pro-image", request)["contents"][0]["parts"]
    assert parts[0] == {"text": "make it blue"}
    assert [p["inlineData"]["mimeType"] for p in parts[1:]] == ["image/png", "image/png"]
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == request.input_images[0].data


def test_a_mask_is_an_instruction_and_a_black_and_white_image_after_the_inputs() -> None:
    parts = body_for("gemini-2.5-flash-image", edit(mask=True))["contents"][0]["parts"]
    assert [next(iter(p)) for p in parts] == ["text", "inlineData", "text", "inlineData"]
    assert parts[2]["text"] == MASK_INSTRUCTION
    sent = Image.open(io.BytesIO(base64.b64decode(parts[3]["inlineData"]["data"])))
    assert sent.mode == "L" and sent.size == (64, 32)
    assert sent.getpixel((5, 5)) == 255 and sent.getpixel((60, 5)) == 0  # white = edit


def test_a_masked_edit_without_geometry_keeps_the_first_images_framing() -> None:
    config = body_for("gemini-3-pro-image", edit(mask=True))["generationConfig"]
    assert config["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "1K"}  # 2:1 → nearest
    unmasked = body_for("gemini-3-pro-image", edit())["generationConfig"]
    assert "imageConfig" not in unmasked  # without a mask, Gemini keeps its own default


def test_no_room_for_the_mask_image_when_the_inputs_fill_the_limit() -> None:
    assert capabilities_for("gemini-2.5-flash-image").max_input_images == 3
    parts = body_for("gemini-2.5-flash-image", edit(3, mask=True))["contents"][0]["parts"]
    assert len(parts) == 4 and MASK_INSTRUCTION not in str(parts)


@pytest.mark.parametrize(
    ("model", "limit"),
    [("gemini-3-pro-image-preview", 14), ("gemini-3.1-flash-image", 14), ("gemini-x", 3)],
)
def test_input_limits_per_model_and_mask_support(model: str, limit: int) -> None:
    caps = capabilities_for(model)
    assert caps.max_input_images == limit and caps.mask


def result_of(data: bytes, model: str = "gemini-2.5-flash-image") -> ImageResult:
    image = GeneratedImage("png", 128, 64, HeldB64.from_bytes(data))
    return ImageResult(images=[image], model=model)


async def test_keep_unmasked_pastes_the_input_back_outside_the_mask() -> None:
    request = edit(mask=True)
    result = result_of(picture((128, 64), (0, 0, 200)))  # Gemini's own size: scaled to match
    await keep_unmasked(result, request, capabilities_for("gemini-2.5-flash-image"))
    merged = Image.open(io.BytesIO(await decode(result.images[0].source)))
    assert merged.size == (128, 64) and result.images[0].size == Size(128, 64)
    assert merged.getpixel((10, 10)) == (0, 0, 200)  # left half: the model's edit
    assert merged.getpixel((120, 10)) == (200, 0, 0)  # right half: the input's own pixels
    assert result.notes == [APPLIED_NOTE]


async def test_keep_unmasked_says_when_the_mask_was_not_shown_to_the_model() -> None:
    result = result_of(picture((64, 32), (0, 0, 200)))
    await keep_unmasked(result, edit(3, mask=True), capabilities_for("gemini-2.5-flash-image"))
    assert result.notes == [APPLIED_NOTE, NO_ROOM_NOTE]


async def test_an_undecodable_answer_is_an_empty_upstream_error() -> None:
    broken = picture()[:40]  # a valid PNG header, then nothing
    with pytest.raises(UpstreamError) as caught:
        await keep_unmasked(result_of(broken), edit(mask=True), capabilities_for("gemini-x"))
    assert caught.value.kind is FailureKind.EMPTY
