"""The full check of a 2xx answer of the chaos benchmark: does it carry the images it claims?

Runs in a worker process (see chaos_client.Decoder): parsing 1.5 MB of JSON and decoding a
1024×1024 PNG costs ~25 ms, which must neither stall the load client's event loop nor be
counted in any latency. Imports stay light so the worker starts fast.
"""

from __future__ import annotations

import base64
import binascii
import io

import orjson
from PIL import Image


def image_problem(body: bytes, images: int, size: tuple[int, int] | None) -> str | None:
    """None when ``body`` is an OpenAI images answer with ``images`` decodable images of ``size``.

    Otherwise why not, in a few words: such a 2xx is a false success.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or len(data) != images:
        found = len(data) if isinstance(data, list) else "no"
        return f"{found} images in data, asked for {images}"
    for item in data:
        problem = _one_image(item, size)
        if problem is not None:
            return problem
    return None


def _one_image(item: object, size: tuple[int, int] | None) -> str | None:
    b64 = item.get("b64_json") if isinstance(item, dict) else None
    if not isinstance(b64, str) or not b64:
        return "an item without b64_json"
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return "b64_json is not base64"
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()  # the whole image, not just its header: a cut-off PNG fails here
            got = image.size
    except (OSError, SyntaxError, ValueError) as exc:
        return f"image does not decode ({type(exc).__name__}: {str(exc)[:80]})"
    if size is not None and got != size:
        return f"image is {got[0]}x{got[1]}, asked for {size[0]}x{size[1]}"
    return None
