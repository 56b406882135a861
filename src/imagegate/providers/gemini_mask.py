"""How Gemini honours an OpenAI-style mask, which its API does not have (docs/editing.md).

Gemini edits by instruction only (reference gemini-image.md §3: "There is no mask input"). The
gateway applies a mask in two steps:

1. Ask: the mask goes along as one more image, converted to black and white (white = edit), after
   the input images, with an instruction to change only the white region. This steers the model
   so the edit lands where the client wanted it.
2. Guarantee: once the image is back, every pixel outside the mask is replaced by the input
   image's own pixel (output/mask.py `apply_mask`). Whatever the model did, the result differs
   from the input only inside the mask, as it would on OpenAI.

Step 2 decodes pixels, which the hot path never does; it runs in a thread, for masked edits only.
When the input images already fill the model's image limit, step 1 is skipped (there is no room
for the mask image) and the result says so in its notes; step 2 still applies.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from PIL import UnidentifiedImageError

from imagegate.core.deployment import Capabilities
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import Size, nearest_ratio, tier_for
from imagegate.core.imageinfo import NotAnImage, sniff
from imagegate.core.payload import HeldB64, TruncatedImage, decode
from imagegate.core.request import ImageRequest
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.output.mask import apply_mask, to_white_is_edit

MASK_INSTRUCTION = (
    "The next image is a mask for the first image: white marks the region to edit, black the"
    " region to keep. Change only the white region and keep every pixel of the black region"
    " exactly as it is in the first image. Do not draw the mask itself."
)
APPLIED_NOTE = "mask applied: pixels outside it were kept from the input image"
NO_ROOM_NOTE = (
    "the input images fill this model's limit, so the mask was applied afterwards only"
    " (not shown to the model)"
)


def sends_mask_image(request: ImageRequest, caps: Capabilities) -> bool:
    """Whether the mask image fits in the request beside the input images (step 1)."""
    return request.mask is not None and len(request.input_images) < caps.max_input_images


def mask_parts(request: ImageRequest, caps: Capabilities) -> list[dict[str, Any]]:
    """The instruction and the black/white mask image; none when there is no mask or no room.

    Decodes the mask: call it off the event loop.
    """
    if request.mask is None or not sends_mask_image(request, caps):
        return []
    white_is_edit = to_white_is_edit(request.mask.data)
    data = base64.b64encode(white_is_edit).decode("ascii")
    return [{"text": MASK_INSTRUCTION}, {"inlineData": {"mimeType": "image/png", "data": data}}]


def masked_geometry(request: ImageRequest, caps: Capabilities) -> tuple[str, str] | None:
    """(aspectRatio, imageSize) of the first input image, for a masked edit that asked none.

    The mask is pasted back in the input's framing, so the output must keep the input's aspect;
    Gemini would otherwise choose its own. None when the request already names a geometry.
    """
    if request.mask is None or request.size is not None or request.aspect_ratio is not None:
        return None
    info = sniff(request.input_images[0].data)
    if info is None:
        return None
    size = Size(info.width, info.height)
    ratio = nearest_ratio(size.aspect, caps.aspect_ratios or ("1:1",))
    return ratio, request.resolution or tier_for(size, caps.resolutions or ("1K",))


async def keep_unmasked(result: ImageResult, request: ImageRequest, caps: Capabilities) -> None:
    """Step 2: replace every image of `result` by its composite with the first input image.

    Raises UpstreamError when an image cannot be read whole or decoded; the caller closes the
    result then.
    """
    assert request.mask is not None
    original, mask = request.input_images[0].data, request.mask.data
    images: list[GeneratedImage] = []
    for image in result.images:
        try:
            edited = await decode(image.source)
            merged = await asyncio.to_thread(apply_mask, original, edited, mask)
            info = sniff(merged)
        except TruncatedImage as exc:
            raise UpstreamError(FailureKind.UNAVAILABLE, f"Gemini: {exc}") from exc
        except (UnidentifiedImageError, OSError, NotAnImage) as exc:
            raise UpstreamError(
                FailureKind.EMPTY, f"Gemini answered with an image that cannot be decoded: {exc}"
            ) from exc
        assert info is not None  # just encoded by Pillow
        source = HeldB64.from_bytes(merged)
        images.append(GeneratedImage(info.format, info.width, info.height, source, info.has_alpha))
    result.images = images
    result.notes.append(APPLIED_NOTE)
    if not sends_mask_image(request, caps):
        result.notes.append(NO_ROOM_NOTE)
