"""OpenAI edits upstream: multipart with `image` or repeated `image[]`, the mask byte for byte."""

from __future__ import annotations

import email.parser
import email.policy
import io

import orjson
from PIL import Image

from imagegate.core.deployment import Deployment
from imagegate.core.geometry import Size
from imagegate.core.request import ImageRequest, InputImage, Quality
from imagegate.providers.openai import build_edit, build_generation

DEPLOYMENT = Deployment("gpt", "oa", "openai", "gpt-image-1.5", "https://example.test/v1")


def png(size: tuple[int, int] = (4, 4), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG")
    return out.getvalue()


def parts(body: bytes, content_type: str) -> list[tuple[str, str | None, str, bytes]]:
    """(name, filename, content type, payload) of each part, parsed by the standard library."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    found = []
    for part in message.iter_parts():  # type: ignore[attr-defined]
        payload = part.get_payload(decode=True)
        found.append(
            (
                part.get_param("name", header="content-disposition"),
                part.get_filename(),
                part.get_content_type(),
                payload,
            )
        )
    return found


def test_one_image_is_the_field_image_and_scalars_are_text() -> None:
    image = InputImage(png(), "image/png")
    request = ImageRequest(
        prompt="add a hat",
        model="gpt",
        n=2,
        size=Size(1024, 1024),
        quality=Quality.HIGH,
        input_images=(image,),
        user="u1",
        passthrough={"openai": {"input_fidelity": "high", "moderation": "low"}},
    )
    url, body, content_type = build_edit(request, DEPLOYMENT, "b0undary")
    assert url == "https://example.test/v1/images/edits"
    assert content_type == "multipart/form-data; boundary=b0undary"
    found = parts(body, content_type)
    text = {name: payload.decode() for name, filename, _, payload in found if filename is None}
    assert text == {
        "model": "gpt-image-1.5",
        "prompt": "add a hat",
        "n": "2",
        "size": "1024x1024",
        "quality": "high",
        "user": "u1",
        "input_fidelity": "high",
        "moderation": "low",
    }
    files = [(name, ctype, payload) for name, filename, ctype, payload in found if filename]
    assert files == [("image", "image/png", image.data)]


def test_several_images_are_repeated_image_brackets_and_the_mask_is_sent_as_is() -> None:
    images = (InputImage(png(), "image/png"), InputImage(b"\xff\xd8jpeg-bytes", "image/jpeg"))
    mask = InputImage(png(mode="RGBA"), "image/png")
    request = ImageRequest(prompt="merge", model="gpt", input_images=images, mask=mask)
    _, body, content_type = build_edit(request, DEPLOYMENT, "b")
    files = [(name, fn, ctype, data) for name, fn, ctype, data in parts(body, content_type) if fn]
    assert files == [
        ("image[]", "image-0.png", "image/png", images[0].data),
        ("image[]", "image-1.jpg", "image/jpeg", images[1].data),
        ("mask", "mask.png", "image/png", mask.data),  # OpenAI's own convention: unchanged
    ]
    text = {name: data for name, fn, _, data in parts(body, content_type) if fn is None}
    assert text["size"] == b"auto"


def test_generation_body_is_unchanged_json() -> None:
    url, body = build_generation(ImageRequest(prompt="a fox", model="gpt"), DEPLOYMENT)
    assert url == "https://example.test/v1/images/generations"
    assert orjson.loads(body) == {
        "model": "gpt-image-1.5",
        "prompt": "a fox",
        "n": 1,
        "size": "auto",
    }
