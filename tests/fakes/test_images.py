"""The image bytes the fakes serve: real, deterministic, about as large as real answers."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from tests.fakes.images import ImageFormat, clear_cache, encoded_image, encoded_image_b64


def test_1024_png_base64_is_about_real_size() -> None:
    """Real 1024x1024 Gemini/OpenAI PNGs are ~1.5 MB of base64; the fake's must be too."""
    size = len(encoded_image_b64(1024, 1024))
    assert 1_275_000 <= size <= 1_725_000, size


@pytest.mark.parametrize(
    ("fmt", "pillow_name"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")]
)
def test_each_format_decodes_at_its_size(fmt: ImageFormat, pillow_name: str) -> None:
    data = encoded_image(320, 208, fmt)
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size) == (pillow_name, (320, 208))


def test_base64_is_standard_padded_and_cached() -> None:
    b64 = encoded_image_b64(100, 60)
    assert base64.b64decode(b64, validate=True) == encoded_image(100, 60)
    assert b"-" not in b64
    assert b"_" not in b64
    assert encoded_image_b64(100, 60) is b64


def test_images_are_deterministic_and_textured() -> None:
    clear_cache()
    first = encoded_image(64, 64)
    clear_cache()
    assert encoded_image(64, 64) == first
    with Image.open(io.BytesIO(first)) as image:
        colors = image.getcolors(maxcolors=64 * 64) or []
        assert len(colors) > 1000  # noise, not a flat fill


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        encoded_image(0, 10)
    with pytest.raises(ValueError, match="format"):
        encoded_image(10, 10, "gif")  # type: ignore[arg-type]
