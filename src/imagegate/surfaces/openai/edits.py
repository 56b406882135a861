"""OpenAI edits → ImageRequest: the fields, each image checked by its header, the mask validated.

The mask stays in OpenAI's convention (alpha 0 = edit) inside the gateway; each provider converts
it (core/request.py, output/mask.py). Images are checked here by their header only, so a bad
upload is refused with its field's name before any upstream is called or any money is spent.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from imagegate.core.errors import InvalidRequest
from imagegate.core.geometry import Size
from imagegate.core.imageinfo import NotAnImage, sniff
from imagegate.core.request import ImageRequest, InputImage
from imagegate.output.mask import MaskError, validate_mask
from imagegate.surfaces.openai.translate import check_common, invalid_from, to_image_request
from imagegate.surfaces.openai.uploads import EditUploads, Upload
from imagegate.surfaces.openai.wire import EditRequest

EDIT_FORMATS = ("png", "jpeg", "webp")  # what OpenAI takes as edit input (reference §2)
PASSTHROUGH = ("input_fidelity", "moderation", "safety_identifier", "partial_images")


def parse_edit(uploads: EditUploads, *, max_prompt_chars: int) -> EditRequest:
    """The edit's scalar fields, or InvalidRequest naming the first one that is wrong."""
    try:
        wire = EditRequest.model_validate(uploads.fields, strict=uploads.strict)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    check_common(wire, max_prompt_chars=max_prompt_chars)
    return wire


def input_image(upload: Upload) -> tuple[InputImage, Size]:
    """The upload as an InputImage with its pixel size, read from its header alone."""
    try:
        info = sniff(upload.data)
    except NotAnImage as exc:
        raise InvalidRequest(
            f"`{upload.param}` is not a usable image ({exc}); edits take PNG, JPEG or WebP files.",
            param=upload.param,
        ) from None
    if info is None:
        raise InvalidRequest(
            f"`{upload.param}` is too short to be an image ({len(upload.data)} bytes).",
            param=upload.param,
        )
    if info.format not in EDIT_FORMATS:
        raise InvalidRequest(
            f"`{upload.param}` is a {info.format.upper()} image; edits take PNG, JPEG or WebP.",
            param=upload.param,
        )
    if not info.width or not info.height:
        raise InvalidRequest(f"`{upload.param}` has no pixels.", param=upload.param)
    return InputImage(upload.data, info.mime_type), Size(info.width, info.height)


async def checked_inputs(uploads: EditUploads) -> tuple[tuple[InputImage, ...], InputImage | None]:
    """Every image checked by its header; the mask decoded and checked against the first image.

    The mask check decodes pixels (at most 4 MB of PNG), so it runs in a thread.
    """
    checked = [input_image(upload) for upload in uploads.images]
    images = tuple(image for image, _ in checked)
    if uploads.mask is None:
        return images, None
    try:
        await asyncio.to_thread(validate_mask, uploads.mask.data, checked[0][1])
    except MaskError as exc:
        raise InvalidRequest(str(exc), param="mask") from None
    return images, InputImage(uploads.mask.data, "image/png")


def to_edit_request(
    wire: EditRequest,
    images: tuple[InputImage, ...],
    mask: InputImage | None,
    *,
    request_id: str,
    client_id: str | None,
    deadline: float,
) -> ImageRequest:
    return to_image_request(
        wire,
        request_id=request_id,
        client_id=client_id,
        deadline=deadline,
        passthrough_fields=PASSTHROUGH,
        input_images=images,
        mask=mask,
    )
