"""The images of an edit request: multipart parts read as they stream, or JSON `data:` URLs.

Limits (reference openai-images.md §2): at most 16 images, each under 50 MB; a mask under 4 MB;
the whole body within `server.max_body_mb`. They are enforced while the bytes arrive, so an
oversized upload is refused at the first byte over its limit rather than after buffering it.
Every refusal names the field the way the client wrote it: `image`, `image[2]`, `images[0]`,
`mask`. Images are indexed from 0 in the order they arrived.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from imagegate.core.errors import InvalidRequest, PayloadTooLarge
from imagegate.surfaces.context import read_json

MB = 1024 * 1024
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * MB
MAX_MASK_BYTES = 4 * MB
MAX_TEXT_BYTES = 1 * MB  # a text field; the longest legitimate one is a 32,000-character prompt
MAX_IMAGE_URL_CHARS = 20_971_520  # OpenAI's own limit on one `image_url` (reference §4)
CHUNK = 256 * 1024
IMAGE_FIELD = re.compile(r"image(\[\d*\])?")
DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(;[\w=.+-]+)*;base64,", re.ASCII)


@dataclass(frozen=True, slots=True)
class Upload:
    param: str  # how errors name it
    data: bytes


@dataclass(frozen=True, slots=True)
class EditUploads:
    """What an edit request carried: its scalar fields, its images in order, and its mask.

    `fields` are text for multipart (`strict=False` lets pydantic read "2" as 2) and typed JSON
    values for the JSON form.
    """

    fields: dict[str, Any]
    images: tuple[Upload, ...]
    mask: Upload | None
    strict: bool


class _Budget:
    """Bytes the rest of the body may still take, by `server.max_body_mb`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, count: int, param: str) -> None:
        self.used += count
        if self.used > self.limit:
            raise PayloadTooLarge(
                f"The request body is larger than this gateway's limit of {_mb(self.limit)} MB"
                f" (reached while reading `{param}`).",
                param=param,
            )


async def read_edit_uploads(http: web.Request, *, max_body_bytes: int) -> EditUploads:
    """The edit's fields and images, from a multipart or a JSON body."""
    if http.content_type == "multipart/form-data":
        return await read_edit_form(http, max_body_bytes=max_body_bytes)
    if http.content_type == "application/json":
        return edit_json_uploads(await read_json(http))
    raise InvalidRequest(
        "Content-Type must be multipart/form-data (files) or application/json (data: URLs),"
        f" not {http.content_type or 'missing'}.",
        param="Content-Type",
    )


async def read_edit_form(http: web.Request, *, max_body_bytes: int) -> EditUploads:
    """Read a multipart edit: `image`, repeated `image[]` (or `image[0]`…), `mask`, text fields."""
    if http.content_length is not None and http.content_length > max_body_bytes:
        raise PayloadTooLarge(
            f"The request body is {_mb(http.content_length)} MB; this gateway's limit is"
            f" {_mb(max_body_bytes)} MB."
        )
    budget = _Budget(max_body_bytes)
    fields: dict[str, Any] = {}
    images: list[Upload] = []
    mask: Upload | None = None
    try:
        reader = await http.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("Nested multipart bodies are not supported.")
            name = part.name or ""
            if IMAGE_FIELD.fullmatch(name):
                images.append(await _read_image(part, name, len(images), budget))
            elif name == "mask":
                if mask is not None:
                    raise InvalidRequest("Send one `mask`, not several.", param="mask")
                mask = Upload("mask", await _read(part, MAX_MASK_BYTES, "mask", budget))
            else:
                _check_text_field(part, name, fields)
                raw = await _read(part, MAX_TEXT_BYTES, name, budget)
                fields[name] = _text(raw, name)
    except ValueError as exc:  # aiohttp's word for a malformed multipart body
        raise InvalidRequest(f"The multipart body could not be read: {exc}.") from None
    if not images:
        raise InvalidRequest(
            "Missing required parameter: 'image'. Send the image to edit as the file field"
            " `image`, or several as repeated `image[]` fields.",
            param="image",
        )
    return EditUploads(fields, tuple(images), mask, strict=False)


async def _read_image(part: BodyPartReader, name: str, index: int, budget: _Budget) -> Upload:
    if index >= MAX_IMAGES:
        raise InvalidRequest(
            f"Invalid 'image': too many images. Expected at most {MAX_IMAGES} images, but got"
            f" more (`image[{index}]` is image number {index + 1}).",
            param="image",
        )
    param = "image" if name == "image" and index == 0 else f"image[{index}]"
    return Upload(param, await _read(part, MAX_IMAGE_BYTES, param, budget))


def _check_text_field(part: BodyPartReader, name: str, fields: dict[str, Any]) -> None:
    if name == "markup":
        raise InvalidRequest(
            "`markup` (GPT Image 2.5 guide images) is not supported by this gateway; use `mask`.",
            param="markup",
        )
    if part.filename is not None:
        raise InvalidRequest(
            f"Unrecognized file field `{name}`: edits take files only as `image`, `image[]`"
            " and `mask`.",
            param=name or None,
        )
    if name in fields:
        raise InvalidRequest(f"The field `{name}` was sent more than once.", param=name)


async def _read(part: BodyPartReader, limit: int, param: str, budget: _Budget) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        budget.take(len(chunk), param)
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(
                f"`{param}` is larger than {_mb(limit)} MB, the most one {_what(param)} may be.",
                param=param,
            )
    return bytes(data)


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"The field `{name}` is not valid UTF-8 text.", param=name) from None


def edit_json_uploads(body: Any) -> EditUploads:
    """The JSON form: `images: [{"image_url": "data:..."}]`, `mask: {"image_url": ...}`."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    fields = dict(body)
    refs = fields.pop("images", None)
    mask_ref = fields.pop("mask", None)
    if refs is None:
        raise InvalidRequest("Missing required parameter: 'images'.", param="images")
    if not isinstance(refs, list) or not refs:
        raise InvalidRequest(
            '`images` must be a list of 1 to 16 image references, e.g. [{"image_url":'
            ' "data:image/png;base64,..."}].',
            param="images",
        )
    if len(refs) > MAX_IMAGES:
        raise InvalidRequest(
            f"Invalid 'images': too many images. Expected at most {MAX_IMAGES} images, but got"
            f" {len(refs)} instead.",
            param="images",
        )
    images = tuple(
        Upload(f"images[{i}]", _from_ref(ref, f"images[{i}]", MAX_IMAGE_BYTES))
        for i, ref in enumerate(refs)
    )
    mask = None if mask_ref is None else Upload("mask", _from_ref(mask_ref, "mask", MAX_MASK_BYTES))
    return EditUploads(fields, images, mask, strict=True)


def _from_ref(ref: Any, param: str, limit: int) -> bytes:
    """The bytes of one image reference; only inline `data:` URLs are taken."""
    if not isinstance(ref, dict) or set(ref) - {"image_url", "file_id"} or len(ref) != 1:
        raise InvalidRequest(
            f"`{param}` must be an object with exactly one of `image_url` or `file_id`, e.g."
            ' {"image_url": "data:image/png;base64,..."}.',
            param=param,
        )
    if "file_id" in ref:
        raise InvalidRequest(
            f"`{param}.file_id` is not supported: this gateway has no Files API. Send the image"
            " inline as a base64 data: URL in `image_url`, or use multipart.",
            param=param,
        )
    url = ref["image_url"]
    if not isinstance(url, str):
        raise InvalidRequest(f"`{param}.image_url` must be a string.", param=param)
    if len(url) > MAX_IMAGE_URL_CHARS:
        raise InvalidRequest(
            f"`{param}.image_url` is {len(url)} characters; the maximum is"
            f" {MAX_IMAGE_URL_CHARS}. Send large images with multipart.",
            param=param,
        )
    if url.startswith(("https://", "http://")):
        raise InvalidRequest(
            f"`{param}.image_url` is a web URL; the gateway does not fetch client URLs. Send"
            " the image inline as a base64 data: URL, or use multipart.",
            param=param,
        )
    match = DATA_URL.match(url)
    if match is None:
        raise InvalidRequest(
            f"`{param}.image_url` must be a base64 data: URL (data:image/png;base64,...).",
            param=param,
        )
    text = url[match.end() :]
    if len(text) * 3 // 4 > limit:  # before decoding: the size is known from the length
        raise PayloadTooLarge(
            f"`{param}` is larger than {_mb(limit)} MB, the most one {_what(param)} may be.",
            param=param,
        )
    try:
        return base64.b64decode(_standard_alphabet(text), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"`{param}.image_url` does not hold valid base64 data.", param=param
        ) from None


def _standard_alphabet(text: str) -> str:
    text = text.replace("-", "+").replace("_", "/")
    return text + "=" * (-len(text) % 4)


def _what(param: str) -> str:
    return "mask" if param == "mask" else "image"


def _mb(count: float) -> str:
    return f"{count / MB:.3g}"
