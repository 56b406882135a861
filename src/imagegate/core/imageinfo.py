"""Read an encoded image's format and pixel size from its first bytes, without decoding pixels.

The gateway never decodes a whole image on the hot path; the header is enough to verify the
format and geometry, and for PNG it sits in the first 32 characters of the base64 text.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

MIME_BY_FORMAT = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}
FORMAT_BY_MIME = {mime: fmt for fmt, mime in MIME_BY_FORMAT.items()} | {"image/jpg": "jpeg"}

# How much base64 text we are willing to read to find a header (JPEG headers can sit behind
# large EXIF/ICC segments); past this the image is treated as unreadable.
MAX_HEADER_B64 = 256 * 1024


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # png | jpeg | webp | gif
    width: int
    height: int
    has_alpha: bool | None = None  # known for PNG and WebP headers; None when the header cannot say

    @property
    def mime_type(self) -> str:
        return MIME_BY_FORMAT[self.format]


class NotAnImage(ValueError):
    """The bytes are not an image of a format we know, or the header is corrupt."""


def sniff(data: bytes) -> ImageInfo | None:
    """The image header in `data` (the start of an encoded image).

    Returns None when more bytes are needed; raises NotAnImage when the bytes cannot be an image.
    """
    if len(data) < 12:
        return None
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", data[6:10])
        return ImageInfo("gif", width, height)
    raise NotAnImage("not a PNG, JPEG, WebP or GIF image")


def sniff_b64(b64_prefix: bytes | memoryview, end: int | None = None) -> ImageInfo | None:
    """Like `sniff`, on the start of the image's base64 text (either alphabet): `b64_prefix`,
    or its first `end` characters.

    Decodes a growing prefix (64 characters hold a PNG or WebP header; JPEG may need more), so
    the cost stays tiny however much text is passed: this runs once per image on the hot path.
    Only that prefix is copied, never the text up to `end` (pass a memoryview to spare slicing).
    """
    available = len(b64_prefix) if end is None else min(end, len(b64_prefix))
    step = 64
    while True:
        info = _sniff_b64_prefix(bytes(b64_prefix[: min(step, available)]))
        if info is not None or step >= available:
            return info
        step *= 8


def _sniff_b64_prefix(b64_prefix: bytes) -> ImageInfo | None:
    usable = len(b64_prefix) - len(b64_prefix) % 4
    if usable < 16:
        return None
    chunk = b64_prefix[:usable]
    try:
        raw = base64.b64decode(chunk.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
    except binascii.Error as exc:
        raise NotAnImage("image data is not valid base64") from exc
    return sniff(raw)


def _png(data: bytes) -> ImageInfo | None:
    if len(data) < 26:
        return None
    if data[12:16] != b"IHDR":
        raise NotAnImage("PNG without an IHDR chunk")
    width, height, _depth, color_type = struct.unpack(">IIBB", data[16:26])
    # Colour types 4 and 6 carry an alpha channel; a tRNS chunk (palette alpha) is not seen here.
    return ImageInfo("png", width, height, has_alpha=color_type in (4, 6))


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> ImageInfo | None:
    pos = 2
    while True:
        if pos + 4 > len(data):
            return None
        if data[pos] != 0xFF:
            raise NotAnImage("corrupt JPEG marker stream")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return ImageInfo("jpeg", width, height, has_alpha=False)
        pos += 2 + length


def _webp(data: bytes) -> ImageInfo | None:
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return ImageInfo("webp", width & 0x3FFF, height & 0x3FFF, has_alpha=False)
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        width = (bits & 0x3FFF) + 1
        height = ((bits >> 14) & 0x3FFF) + 1
        return ImageInfo("webp", width, height, has_alpha=bool((bits >> 28) & 1))
    if chunk == b"VP8X":
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("webp", width, height, has_alpha=bool(flags & 0x10))
    raise NotAnImage("unknown WebP chunk")
