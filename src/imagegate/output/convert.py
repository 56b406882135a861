"""Transcode an image to the format the client asked for. CPU-bound: run it in a thread."""

from __future__ import annotations

import io

from PIL import Image

SAVE_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def transcode(
    data: bytes,
    fmt: str,
    compression: int | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[bytes, int, int]:
    """(encoded bytes, width, height) of `data` re-encoded as `fmt`, resized to `size` if given.

    `compression` is OpenAI's output_compression, 0–100 where 100 is best quality; JPEG has no
    alpha, so transparent pixels are laid on white. Resizing uses Lanczos; it is only asked for
    when the aspect already matches (a route's `resize`), so nothing is stretched visibly.
    """
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image: Image.Image = opened
        if size is not None and image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        if fmt == "jpeg" and image.mode not in ("RGB", "L"):
            background = Image.new("RGB", image.size, (255, 255, 255))
            rgba = image.convert("RGBA")
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        out = io.BytesIO()
        options: dict[str, int] = {}
        if fmt in ("jpeg", "webp"):
            options["quality"] = 90 if compression is None else max(1, min(100, compression))
        image.save(out, format=SAVE_NAMES[fmt], **options)
        return out.getvalue(), image.width, image.height
