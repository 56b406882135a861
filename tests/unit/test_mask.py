"""Masks: OpenAI's convention (alpha 0 = edit) validated, converted to white = edit, composited."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imagegate.core.geometry import Size
from imagegate.output.mask import (
    MaskError,
    apply_mask,
    edit_region,
    to_white_is_edit,
    validate_mask,
)

EDIT_BOX = (2, 2, 6, 6)  # the transparent (edited) square of `hole_mask`


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def hole_mask(size: tuple[int, int] = (8, 8), mode: str = "RGBA") -> bytes:
    """Opaque black with a fully transparent square at EDIT_BOX."""
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), EDIT_BOX)
    if mode == "LA":
        return encode(image.convert("LA"))
    if mode == "P":
        return encode(image.convert("P"))  # palette + tRNS chunk
    return encode(image)


def solid(colour: tuple[int, ...], size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    return encode(Image.new(mode, size, colour))


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_png_with_alpha_channel_or_trns_and_the_first_images_size_is_valid(mode: str) -> None:
    validate_mask(hole_mask(mode=mode), Size(8, 8))


@pytest.mark.parametrize(
    ("mask", "fragment"),
    [
        (solid((0, 0, 0)), "alpha channel"),
        (encode(Image.new("RGB", (8, 8)), "JPEG"), "PNG image"),
        (hole_mask((8, 9)), "8x9 but the first image is 8x8"),
        (solid((0, 0, 0, 255), mode="RGBA"), "no fully transparent pixel"),
        (b"definitely not an image", "not a readable image"),
        (hole_mask()[:60], "not a readable image"),
    ],
    ids=["rgb-no-alpha", "jpeg", "other-size", "nothing-to-edit", "not-an-image", "truncated"],
)
def test_bad_masks_are_refused_saying_why(mask: bytes, fragment: str) -> None:
    with pytest.raises(MaskError, match=fragment):
        validate_mask(mask, Size(8, 8))


def test_edit_region_is_255_exactly_where_alpha_is_zero() -> None:
    image = Image.new("RGBA", (3, 1))
    image.putdata([(9, 9, 9, 0), (9, 9, 9, 1), (9, 9, 9, 255)])  # half-transparent is kept
    assert list(edit_region(encode(image)).tobytes()) == [255, 0, 0]


def test_to_white_is_edit_is_a_black_and_white_png_of_the_same_size() -> None:
    converted = decoded(to_white_is_edit(hole_mask()))
    assert converted.format == "PNG" and converted.mode == "L" and converted.size == (8, 8)
    assert set(converted.tobytes()) == {0, 255}
    assert converted.getpixel((3, 3)) == 255  # inside the transparent square: edit
    assert converted.getpixel((0, 0)) == 0  # opaque: keep


def test_apply_mask_keeps_the_original_outside_and_the_edit_inside() -> None:
    original, edited = solid((200, 10, 10)), solid((10, 10, 200))
    merged = decoded(apply_mask(original, edited, hole_mask()))
    assert merged.size == (8, 8) and merged.format == "PNG"
    assert merged.getpixel((0, 0)) == (200, 10, 10)
    assert merged.getpixel((7, 7)) == (200, 10, 10)
    assert merged.getpixel((3, 3)) == (10, 10, 200)


def test_apply_mask_scales_original_and_mask_to_the_edited_size_and_keeps_its_format() -> None:
    original = solid((200, 10, 10))
    edited = solid((10, 10, 200), size=(16, 16))
    merged = decoded(apply_mask(original, encode(decoded(edited), "WEBP"), hole_mask()))
    assert merged.size == (16, 16) and merged.format == "WEBP"
    red, blue = merged.getpixel((1, 1)), merged.getpixel((8, 8))
    assert isinstance(red, tuple) and isinstance(blue, tuple)
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]  # lossy WebP: roughly the colours


def test_apply_mask_keeps_transparency_of_the_original() -> None:
    original = solid((200, 10, 10, 0), mode="RGBA")
    merged = decoded(apply_mask(original, solid((10, 10, 200)), hole_mask()))
    assert merged.mode == "RGBA"
    assert merged.getpixel((0, 0)) == (200, 10, 10, 0)
    assert merged.getpixel((3, 3)) == (10, 10, 200, 255)
