"""Image headers are read from the first bytes (or base64 characters) without decoding pixels."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from imagegate.core.imageinfo import NotAnImage, sniff, sniff_b64


def encoded(fmt: str, size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 20, 30, 40)[: len(mode)]).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mode", "alpha"),
    [
        ("PNG", "RGB", False),
        ("PNG", "RGBA", True),
        ("JPEG", "RGB", False),
        ("WEBP", "RGB", False),
        ("WEBP", "RGBA", True),
        ("GIF", "P", None),
    ],
)
def test_format_size_and_alpha_from_the_header(fmt: str, mode: str, alpha: bool | None) -> None:
    info = sniff(encoded(fmt, (1536, 1024), mode))
    assert info is not None
    assert (info.format, info.width, info.height) == (fmt.lower(), 1536, 1024)
    assert info.has_alpha is alpha


def test_png_header_is_in_the_first_32_base64_characters() -> None:
    b64 = base64.b64encode(encoded("PNG", (1344, 768)))
    info = sniff_b64(b64[:36])
    assert info is not None and (info.width, info.height) == (1344, 768)
    assert sniff_b64(b64[:8]) is None  # too short: asks for more


def test_url_safe_base64_is_accepted() -> None:
    b64 = base64.urlsafe_b64encode(encoded("JPEG", (640, 480)))
    info = sniff_b64(b64)
    assert info is not None and info.format == "jpeg"


def test_not_an_image_is_refused() -> None:
    with pytest.raises(NotAnImage):
        sniff(b"<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(NotAnImage):
        sniff_b64(b"!!!!not-base64!!!!!!!!!!")


def test_jpeg_header_behind_a_large_segment_is_still_found() -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 200)).save(out, format="JPEG", exif=b"Exif\x00\x00" + b"\x00" * 30_000)
    b64 = base64.b64encode(out.getvalue())
    info = sniff_b64(b64)
    assert info is not None and (info.width, info.height) == (300, 200)
