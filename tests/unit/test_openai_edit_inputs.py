"""The edit surface's pure parts: JSON image refs, multipart text coerced, images by header."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from imagegate.core.errors import ClientError, InvalidRequest, PayloadTooLarge
from imagegate.surfaces.openai.edits import input_image, parse_edit
from imagegate.surfaces.openai.uploads import EditUploads, Upload, edit_json_uploads

PNG = io.BytesIO()
Image.new("RGB", (6, 4)).save(PNG, format="PNG")
PHOTO = PNG.getvalue()
DATA_URL = "data:image/png;base64," + base64.b64encode(PHOTO).decode()


def test_data_urls_decode_in_order_and_fields_stay_typed() -> None:
    uploads = edit_json_uploads(
        {
            "model": "m",
            "prompt": "p",
            "n": 2,
            "images": [{"image_url": DATA_URL}] * 2,
            "mask": {"image_url": DATA_URL},
        }
    )
    assert [u.param for u in uploads.images] == ["images[0]", "images[1]"]
    assert uploads.images[0].data == PHOTO and uploads.mask == Upload("mask", PHOTO)
    assert uploads.fields == {"model": "m", "prompt": "p", "n": 2} and uploads.strict


@pytest.mark.parametrize(
    ("body", "error", "param", "fragment"),
    [
        ({}, InvalidRequest, "images", "Missing required parameter"),
        ({"images": []}, InvalidRequest, "images", "1 to 16"),
        ({"images": [{"image_url": DATA_URL}] * 17}, InvalidRequest, "images", "got 17"),
        ({"images": [{"image_url": "https://x.test/a.png"}]}, InvalidRequest, "images[0]", "fetch"),
        ({"images": [{"file_id": "file-1"}]}, InvalidRequest, "images[0]", "Files API"),
        (
            {"images": [{"image_url": DATA_URL, "file_id": "f"}]},
            InvalidRequest,
            "images[0]",
            "exactly one",
        ),
        ({"images": [{"image_url": "ftp://x"}]}, InvalidRequest, "images[0]", "data: URL"),
        (
            {"images": [{"image_url": DATA_URL}], "mask": {"image_url": "data:;base64,@@"}},
            InvalidRequest,
            "mask",
            "base64",
        ),
        (
            {
                "images": [{"image_url": DATA_URL}],
                "mask": {"image_url": "data:image/png;base64," + "A" * (6 * 1024 * 1024)},
            },
            PayloadTooLarge,
            "mask",
            "4 MB",
        ),
    ],
)
def test_refs_the_gateway_cannot_take_are_refused_by_field(
    body: dict[str, object], error: type[ClientError], param: str, fragment: str
) -> None:
    with pytest.raises(error) as caught:
        edit_json_uploads(body)
    assert caught.value.param == param and fragment in caught.value.message


def test_multipart_text_is_read_as_numbers_and_booleans_but_json_stays_strict() -> None:
    form = {
        "prompt": "p",
        "model": "m",
        "n": "2",
        "stream": "true",
        "output_compression": "50",
        "output_format": "webp",
    }
    wire = parse_edit(EditUploads(form, (), None, strict=False), max_prompt_chars=100)
    assert (wire.n, wire.stream, wire.output_compression) == (2, True, 50)
    with pytest.raises(InvalidRequest) as caught:
        parse_edit(
            EditUploads({"prompt": "p", "model": "m", "n": "2"}, (), None, strict=True),
            max_prompt_chars=100,
        )
    assert caught.value.param == "n"


def test_an_image_is_read_by_its_header_and_its_type_is_what_the_bytes_say() -> None:
    image, size = input_image(Upload("image[3]", PHOTO))
    assert image.mime_type == "image/png" and (size.width, size.height) == (6, 4)
    with pytest.raises(InvalidRequest) as caught:
        input_image(Upload("image[3]", b"%PDF-1.7 not an image at all"))
    assert caught.value.param == "image[3]"
