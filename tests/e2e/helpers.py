"""What the e2e tests check on every image: it decodes, and it is the size the header claims."""

from __future__ import annotations

import base64
import io

from PIL import Image


def decode_image(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()  # decodes every pixel: a truncated or corrupt image fails here
    return image
