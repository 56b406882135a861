"""The simulator edits visibly, deterministically, and only inside the mask."""

from __future__ import annotations

import io

from PIL import Image

from imagegate.core.deployment import Deployment
from imagegate.core.geometry import Size
from imagegate.core.payload import decode
from imagegate.core.request import ImageRequest, InputImage
from imagegate.providers.simulator import SimulatorProvider, draw_edit, output_size

GREEN = (10, 200, 10)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def request(mask: bool = True, **fields: object) -> ImageRequest:
    holed = Image.new("RGBA", (40, 20), (0, 0, 0, 255))
    holed.paste((0, 0, 0, 0), (0, 0, 20, 20))  # edit the left half
    return ImageRequest(
        prompt="a hat",
        model="sim",
        input_images=(InputImage(png(Image.new("RGB", (40, 20), GREEN)), "image/png"),),
        mask=InputImage(png(holed), "image/png") if mask else None,
        **fields,  # type: ignore[arg-type]
    )


def test_an_edit_without_a_size_has_the_first_images_size() -> None:
    assert output_size(request()) == Size(40, 20)
    assert output_size(request(size=Size(64, 64))) == Size(64, 64)


def test_pixels_outside_the_mask_are_the_inputs_and_inside_are_changed() -> None:
    image = Image.open(io.BytesIO(draw_edit(request(), 0, Size(40, 20), "png"))).convert("RGB")
    assert all(image.getpixel((x, y)) == GREEN for x in range(20, 40) for y in range(20))
    assert sum(image.getpixel((x, y)) != GREEN for x in range(20) for y in range(20)) > 300


def test_without_a_mask_the_whole_image_is_edited_and_the_same_request_draws_the_same() -> None:
    first = draw_edit(request(mask=False), 0, Size(40, 20), "png")
    assert first == draw_edit(request(mask=False), 0, Size(40, 20), "png")
    image = Image.open(io.BytesIO(first)).convert("RGB")
    assert image.getpixel((39, 19)) != GREEN


async def test_the_provider_returns_the_edit_at_the_asked_format() -> None:
    deployment = Deployment("sim", "sim", "simulator", "sim-image", "simulator://local")
    provider = SimulatorProvider(deployment, None)  # type: ignore[arg-type]  # no network
    result = await provider.generate(request(output_format="webp", n=2), None)
    assert [(i.format, i.width, i.height) for i in result.images] == [("webp", 40, 20)] * 2
    assert Image.open(io.BytesIO(await decode(result.images[0].source))).format == "WEBP"


def test_a_transparent_background_keeps_the_inputs_alpha() -> None:
    clear = Image.new("RGBA", (40, 20), (10, 200, 10, 0))
    asked = ImageRequest(
        prompt="a hat", model="sim", input_images=(InputImage(png(clear), "image/png"),)
    )
    image = Image.open(io.BytesIO(draw_edit(asked, 0, Size(40, 20), "png", transparent=True)))
    assert image.mode == "RGBA" and image.getpixel((30, 10))[3] == 0  # type: ignore[index]
