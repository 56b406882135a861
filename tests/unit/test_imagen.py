"""Imagen's :predict body from an ImageRequest, and its answers read back, with bytes alone."""

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
from imagegate.core.request import ImageRequest, InputImage, Quality
from imagegate.core.result import ImageResult
from imagegate.providers import imagen
from tests.fakes.images import encoded_image_b64

STANDARD = "imagen-4.0-generate-001"
FAST = "imagen-4.0-fast-generate-001"
EDIT = "imagen-3.0-capability-001"


def body_for(
    model: str = STANDARD,
    *,
    vertex: bool = True,
    extra: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    deployment = Deployment("d", "p", "vertex", model, "https://x.test", options=options or {})
    caps = imagen.capabilities_for(model, vertex=vertex)
    request = ImageRequest(prompt="a fox", model="r", **fields)
    return imagen.build_predict(request, deployment, caps, extra or {})


def png(width: int, height: int, mode: str = "RGB", color: Any = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), color).save(out, "PNG")
    return out.getvalue()


def half_transparent_mask(width: int, height: int) -> bytes:
    """OpenAI's convention: the left half transparent (edit), the right half opaque."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def test_a_plain_request_asks_for_n_images_and_the_filter_reasons() -> None:
    assert body_for(n=3) == {
        "instances": [{"prompt": "a fox"}],
        "parameters": {"sampleCount": 3, "includeRaiReason": True},
    }


@pytest.mark.parametrize(
    ("size", "ratio", "tier"),
    [
        ((1024, 1024), "1:1", "1K"),
        ((1536, 1024), "4:3", "1K"),
        ((1024, 1792), "9:16", "1K"),
        ((2816, 1536), "16:9", "2K"),
    ],
)
def test_a_pixel_size_becomes_the_nearest_ratio_and_tier(
    size: tuple[int, int], ratio: str, tier: str
) -> None:
    parameters = body_for(size=Size(*size))["parameters"]
    assert (parameters["aspectRatio"], parameters["sampleImageSize"]) == (ratio, tier)


def test_fast_and_imagen_3_get_no_sample_image_size() -> None:
    assert "sampleImageSize" not in body_for(FAST, resolution="1K")["parameters"]
    assert "sampleImageSize" not in body_for(FAST, size=Size(2048, 2048))["parameters"]
    assert imagen.capabilities_for(FAST, vertex=True).resolutions == ("1K",)
    assert imagen.capabilities_for("imagen-3.0-generate-002", vertex=True).resolutions == ("1K",)


def test_quality_high_asks_for_2k_where_the_model_has_it() -> None:
    assert body_for(quality=Quality.HIGH)["parameters"]["sampleImageSize"] == "2K"
    assert "sampleImageSize" not in body_for(quality=Quality.MEDIUM)["parameters"]
    assert "sampleImageSize" not in body_for(FAST, quality=Quality.HIGH)["parameters"]


def test_a_seed_turns_the_watermark_off() -> None:
    parameters = body_for(seed=42)["parameters"]
    assert (parameters["seed"], parameters["addWatermark"]) == (42, False)


def test_seed_is_declared_on_vertex_only() -> None:
    assert imagen.capabilities_for(STANDARD, vertex=True).seed
    assert not imagen.capabilities_for(STANDARD, vertex=False).seed


def test_output_format_and_compression_are_native() -> None:
    assert body_for(output_format="jpeg", output_compression=70)["parameters"]["outputOptions"] == {
        "mimeType": "image/jpeg",
        "compressionQuality": 70,
    }
    # Compression means nothing to PNG: not sent.
    assert body_for(output_format="png", output_compression=70)["parameters"]["outputOptions"] == {
        "mimeType": "image/png"
    }


def test_imagen_parameters_come_from_the_passthrough_and_nothing_else_does() -> None:
    extra = {
        "negativePrompt": "blurry",
        "personGeneration": "ALLOW_ADULT",
        "safetySetting": "BLOCK_ONLY_HIGH",
        "contents": [{"parts": [{"text": "a generateContent field"}]}],
    }
    parameters = body_for(extra=extra)["parameters"]
    assert parameters["negativePrompt"] == "blurry"
    assert parameters["personGeneration"] == "ALLOW_ADULT"
    assert parameters["safetySetting"] == "BLOCK_ONLY_HIGH"
    assert "contents" not in parameters


def test_an_edit_sends_raw_and_a_white_is_edit_mask() -> None:
    image = png(64, 32)
    body = body_for(
        EDIT,
        input_images=(InputImage(image, "image/png"),),
        mask=InputImage(half_transparent_mask(64, 32), "image/png"),
    )
    raw, mask = body["instances"][0]["referenceImages"]
    assert raw["referenceType"] == "REFERENCE_TYPE_RAW" and raw["referenceId"] == 1
    assert base64.b64decode(raw["referenceImage"]["bytesBase64Encoded"]) == image
    assert mask["referenceType"] == "REFERENCE_TYPE_MASK"
    assert mask["maskImageConfig"] == {"maskMode": "MASK_MODE_USER_PROVIDED"}
    data = base64.b64decode(mask["referenceImage"]["bytesBase64Encoded"])
    with Image.open(io.BytesIO(data)) as received:
        assert received.convert("L").getpixel((8, 16)) == 255  # transparent → white: edit
        assert received.convert("L").getpixel((56, 16)) == 0  # opaque → black: keep
    assert body["parameters"]["editMode"] == "EDIT_MODE_INPAINT_INSERTION"


def test_the_edit_mode_comes_from_the_passthrough_then_the_option() -> None:
    fields: dict[str, Any] = {
        "input_images": (InputImage(png(16, 16), "image/png"),),
        "mask": InputImage(half_transparent_mask(16, 16), "image/png"),
    }
    removal = {"edit_mode": "EDIT_MODE_INPAINT_REMOVAL"}
    assert body_for(EDIT, options=removal, **fields)["parameters"]["editMode"] == (
        "EDIT_MODE_INPAINT_REMOVAL"
    )
    outpaint = {"editMode": "EDIT_MODE_OUTPAINT", "maskImageConfig": {"dilation": 0.03}}
    body = body_for(EDIT, options=removal, extra=outpaint, **fields)
    assert body["parameters"]["editMode"] == "EDIT_MODE_OUTPAINT"
    assert body["instances"][0]["referenceImages"][1]["maskImageConfig"] == {
        "dilation": 0.03,
        "maskMode": "MASK_MODE_USER_PROVIDED",
    }


def test_without_a_mask_an_edit_is_mask_free_or_uses_an_automatic_mask() -> None:
    inputs = (InputImage(png(16, 16), "image/png"),)
    body = body_for(EDIT, input_images=inputs)
    assert [r["referenceType"] for r in body["instances"][0]["referenceImages"]] == [
        "REFERENCE_TYPE_RAW"
    ]
    assert "editMode" not in body["parameters"]
    extra = {
        "maskImageConfig": {"maskMode": "MASK_MODE_BACKGROUND"},
        "editMode": "EDIT_MODE_BGSWAP",
    }
    body = body_for(EDIT, input_images=inputs, extra=extra)
    auto = body["instances"][0]["referenceImages"][1]
    assert auto == {
        "referenceType": "REFERENCE_TYPE_MASK",
        "referenceId": 2,
        "maskImageConfig": {"maskMode": "MASK_MODE_BACKGROUND"},
    }
    assert body["parameters"]["editMode"] == "EDIT_MODE_BGSWAP"


def test_only_the_edit_model_declares_input_images_and_a_mask() -> None:
    edit = imagen.capabilities_for(EDIT, vertex=True)
    assert (edit.max_input_images, edit.mask) == (1, True)
    plain = imagen.capabilities_for(STANDARD, vertex=True)
    assert (plain.max_input_images, plain.mask, plain.max_n) == (0, False, 4)


# --- answers -------------------------------------------------------------------------------


def answer(*entries: dict[str, Any]) -> bytes:
    return orjson.dumps({"predictions": list(entries)})


def image_entry(width: int = 64, height: int = 48) -> dict[str, Any]:
    return {
        "bytesBase64Encoded": encoded_image_b64(width, height).decode(),
        "mimeType": "image/png",
    }


def fresh() -> ImageResult:
    return ImageResult(images=[])


def test_every_image_is_read_with_the_enhanced_prompt() -> None:
    first = {**image_entry(), "prompt": "A fox in soft morning light"}
    result = imagen.whole_answer(answer(first, image_entry(32, 32)), fresh(), "Vertex AI")
    assert [(i.format, i.width, i.height) for i in result.images] == [
        ("png", 64, 48),
        ("png", 32, 32),
    ]
    assert result.revised_prompt == "A fox in soft morning light"


def test_filtered_images_leave_the_rest_and_a_note() -> None:
    body = answer(image_entry(), {"raiFilteredReason": "filtered: person"})
    result = imagen.whole_answer(body, fresh(), "Vertex AI")
    assert len(result.images) == 1
    assert result.notes == ["Imagen's safety filter withheld 1 image(s): filtered: person"]


def test_every_image_filtered_is_safety() -> None:
    body = answer({"raiFilteredReason": "filtered"}, {"raiFilteredReason": "filtered"})
    with pytest.raises(UpstreamError) as caught:
        imagen.whole_answer(body, fresh(), "Vertex AI")
    assert caught.value.kind is FailureKind.SAFETY


def test_no_prediction_at_all_is_empty() -> None:
    with pytest.raises(UpstreamError) as caught:
        imagen.whole_answer(b"{}", fresh(), "Gemini")
    assert caught.value.kind is FailureKind.EMPTY


def test_a_body_that_is_not_json_is_unavailable() -> None:
    with pytest.raises(UpstreamError) as caught:
        imagen.whole_answer(b"<html>", fresh(), "Gemini")
    assert caught.value.kind is FailureKind.UNAVAILABLE


def test_the_safety_400_is_recognised_before_the_provider_classifier() -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": "Image generation failed with the following error: The response is"
                " blocked, as it may violate our policies. Error Code: 58061214",
            }
        }
    )
    error = imagen.safety_block(400, body)
    assert error is not None and error.kind is FailureKind.SAFETY
    assert error.provider_code == "58061214"
    assert imagen.safety_block(400, b'{"error": {"message": "aspectRatio is invalid"}}') is None
    assert imagen.safety_block(500, body) is None
