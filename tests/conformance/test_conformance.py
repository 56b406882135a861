"""One conformance suite over every provider, each against its own fake upstream server.

Every check is driven by the capabilities the provider declares for the case's model (after the
model catalog and any config override): what it declares, it must deliver, and deliver as the
image that was asked for, checked in the pixels or in what the fake received.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from PIL import Image

from imagegate.catalog import Catalog
from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import Size, parse_size, tier_for
from imagegate.core.payload import TruncatedImage, decode
from imagegate.core.request import Background, ImageRequest, InputImage, Quality
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.output.verify import geometry_mismatch
from imagegate.providers import registry
from imagegate.providers._http import make_session
from imagegate.providers.base import Provider
from imagegate.router.plan import find_gap
from tests.conformance.case import ProviderCase, Sent
from tests.conformance.cases import all_cases
from tests.fakes.server import FakeUpstream

CASES = all_cases()
PROMPT = "a lighthouse on a cliff at dusk"


@dataclass
class Running:
    case: ProviderCase
    fake: FakeUpstream
    provider: Provider
    results: list[ImageResult] = field(default_factory=list)

    @property
    def caps(self) -> Capabilities:
        return self.provider.capabilities

    def request(self, **fields: object) -> ImageRequest:
        fields.setdefault("prompt", PROMPT)
        return ImageRequest(
            model=self.case.model,
            deadline=time.monotonic() + 60,
            **fields,  # type: ignore[arg-type]
        )

    async def generate(self, **fields: object) -> ImageResult:
        request = self.request(**fields)
        gap = find_gap(self.caps, request)
        assert gap is None, f"{self.case.id} declares it can serve {fields}, but: {gap}"
        result = await self.provider.generate(request, self.key)
        self.results.append(result)
        assert result.images, "a provider never returns a result without images"
        return result

    @property
    def key(self) -> UpstreamKey | None:
        return None if self.case.key is None else UpstreamKey("conformance:KEY", self.case.key)

    def last_sent(self) -> Sent:
        by_provider = self.case.sent_by_provider
        sent = self.case.sent(self.fake) if by_provider is None else by_provider(self.provider)
        assert sent, f"{self.case.id}: the fake received no image call"
        return sent[-1]


def deployment_for(case: ProviderCase, base_url: str) -> Deployment:
    entry = Catalog.shipped().find(case.kind, case.model)
    return Deployment(
        name=f"conf-{case.kind}",
        provider_name="conformance",
        kind=case.kind,
        model=case.model,
        base_url=(base_url + case.base_path).rstrip("/"),
        keys=() if case.key is None else (UpstreamKey("conformance:KEY", case.key),),
        options=dict(case.options),
        capabilities=None if entry is None else entry.capabilities,
    )


@pytest_asyncio.fixture(params=CASES, ids=[case.id for case in CASES])
async def running(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    case: ProviderCase = request.param
    fake = case.make_fake()
    await fake.start()
    if case.prepare is not None:
        case.prepare(fake)
    session = make_session()
    try:
        deployment = deployment_for(case, fake.base_url)
        provider = registry.provider_class(case.kind)(deployment, session)
        running = Running(case, fake, provider)
        yield running
        for result in running.results:
            await result.aclose()
    finally:
        await session.close()
        await fake.stop()


async def pixels(image: GeneratedImage) -> Image.Image:
    data = await decode(image.source)
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        assert (opened.format or "").lower() == image.format, "the header sniff and Pillow agree"
        assert opened.size == (image.width, image.height)
        return opened.copy()


def solid_png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def half_mask(width: int, height: int) -> bytes:
    """OpenAI convention: the left half fully transparent (edit), the right half opaque."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def is_edit(mask: Image.Image, xy: tuple[int, int], convention: str) -> bool:
    if convention == "alpha":
        return mask.convert("RGBA").getpixel(xy)[3] == 0  # type: ignore[index]
    return mask.convert("L").getpixel(xy) >= 128  # type: ignore[operator]


# --- the checks -----------------------------------------------------------------------------


async def test_a_plain_prompt_gives_a_real_image(running: Running) -> None:
    result = await running.generate()
    image = result.images[0]
    await pixels(image)
    assert image.format in running.caps.output_formats
    assert running.last_sent().prompt == PROMPT
    assert result.provider == running.case.kind


async def test_every_declared_size_comes_back_at_that_size(running: Running) -> None:
    caps = running.caps
    sizes = list(caps.sizes or ())
    if caps.arbitrary_sizes:
        sizes += running.case.arbitrary_sizes
    exact = caps.sizes is not None or caps.arbitrary_sizes
    if not sizes:  # the model frames by aspect ratio: the three standard sizes by aspect
        sizes = ["1024x1024", "1536x1024", "1024x1536"]
    for text in sizes:
        size = parse_size(text)
        assert size is not None
        request = running.request(size=size)
        if find_gap(caps, request) is not None:
            continue
        result = await running.generate(size=size)
        for image in result.images:
            problem = geometry_mismatch(
                request, image, exact=exact, tolerance=caps.aspect_tolerance
            )
            assert problem is None, f"{running.case.id} size {text}: {problem}"


async def test_every_declared_aspect_ratio_comes_back_at_that_aspect(running: Running) -> None:
    for ratio in running.caps.aspect_ratios or ():
        request = running.request(aspect_ratio=ratio)
        result = await running.generate(aspect_ratio=ratio)
        problem = geometry_mismatch(
            request, result.images[0], exact=False, tolerance=running.caps.aspect_tolerance
        )
        assert problem is None, f"{running.case.id} aspect {ratio}: {problem}"


async def test_every_declared_resolution_comes_back_in_that_tier(running: Running) -> None:
    caps = running.caps
    tiers = caps.resolutions or ()
    # 16:9 where offered: some models reach their largest tier only on a wide image (3840x2160)
    ratios = caps.aspect_ratios
    ratio = "16:9" if ratios is None or "16:9" in ratios else ("1:1" if "1:1" in ratios else None)
    for tier in tiers:
        result = await running.generate(resolution=tier, aspect_ratio=ratio)
        got = tier_for(result.images[0].size, tiers)
        assert got == tier, f"{running.case.id}: asked {tier}, got {result.images[0].size}"


async def test_n_up_to_the_declared_maximum_in_one_call(running: Running) -> None:
    n = running.caps.max_n
    result = await running.generate(n=n)
    assert len(result.images) == n
    assert running.last_sent().n == n


async def test_every_declared_output_format(running: Running) -> None:
    for fmt in running.caps.output_formats:
        result = await running.generate(output_format=fmt)
        for image in result.images:
            assert image.format == fmt, f"{running.case.id}: asked {fmt}, got {image.format}"
            await pixels(image)


async def test_every_declared_quality_is_accepted(running: Running) -> None:
    for quality in running.caps.qualities:
        result = await running.generate(quality=Quality(quality))
        assert len(result.images) == 1


async def test_transparent_background_when_declared(running: Running) -> None:
    if not running.caps.transparent_background:
        request = running.request(background=Background.TRANSPARENT)
        gap = find_gap(running.caps, request)
        assert gap is not None and gap.param == "background"
        return
    fmt = "png" if "png" in running.caps.output_formats else running.caps.output_formats[0]
    result = await running.generate(background=Background.TRANSPARENT, output_format=fmt)
    image = await pixels(result.images[0])
    assert image.mode in ("RGBA", "LA") or "transparency" in image.info


async def test_input_images_up_to_the_declared_maximum_reach_the_upstream(
    running: Running,
) -> None:
    count = running.caps.max_input_images
    if count == 0:
        request = running.request(
            input_images=(InputImage(solid_png(8, 8, (1, 2, 3)), "image/png"),)
        )
        gap = find_gap(running.caps, request)
        assert gap is not None and gap.param == "image"
        return
    colors = [(i * 15 % 256, 255 - i * 15 % 256, i * 40 % 256) for i in range(count)]
    inputs = tuple(InputImage(solid_png(64, 64, color), "image/png") for color in colors)
    await running.generate(input_images=inputs)
    sent = running.last_sent()
    assert len(sent.images) == count
    for original, received in zip(colors, sent.images, strict=True):
        with Image.open(io.BytesIO(received)) as image:
            assert image.convert("RGB").getpixel((10, 10)) == original


async def test_a_mask_reaches_the_upstream_in_its_own_convention(running: Running) -> None:
    base = InputImage(solid_png(256, 256, (200, 40, 40)), "image/png")
    mask = InputImage(half_mask(256, 256), "image/png")
    if not running.caps.mask:
        gap = find_gap(running.caps, running.request(input_images=(base,), mask=mask))
        assert gap is not None
        return
    await running.generate(input_images=(base,), mask=mask)
    sent = running.last_sent()
    assert sent.mask is not None, f"{running.case.id} declares masks but sent none upstream"
    with Image.open(io.BytesIO(sent.mask)) as received:
        received.load()
        width, height = received.size
        assert is_edit(received, (width // 4, height // 2), sent.mask_convention)
        assert not is_edit(received, (3 * width // 4, height // 2), sent.mask_convention)


async def test_a_seed_reaches_the_upstream_when_declared(running: Running) -> None:
    if not running.caps.seed:
        gap = find_gap(running.caps, running.request(seed=4242))
        assert gap is not None and gap.param == "seed"
        return
    await running.generate(seed=4242)
    assert running.last_sent().seed == 4242


async def test_a_size_the_model_cannot_make_is_refused_naming_the_field(running: Running) -> None:
    gap = find_gap(running.caps, running.request(size=Size(3000, 300)))
    assert gap is not None and gap.param == "size"


async def test_each_upstream_state_ends_in_its_failure_kind(running: Running) -> None:
    for scenario, kind in running.case.scenarios.items():
        running.fake.script(scenario)
        got: FailureKind | None = None
        try:
            result = await running.generate()
            for image in result.images:
                await pixels(image)
        except UpstreamError as error:
            got = error.kind
        except TruncatedImage:  # an image streamed through breaks off: the surface sees this
            got = FailureKind.UNAVAILABLE
        assert got is kind, f"{running.case.id} scenario {scenario}: got {got}, expected {kind}"


async def test_a_wrong_geometry_from_upstream_is_seen_as_a_mismatch(running: Running) -> None:
    scenario = running.case.wrong_size_scenario
    if scenario is None:
        return
    caps = running.caps
    fields: dict[str, object]
    if caps.aspect_ratios is not None and "16:9" in caps.aspect_ratios:
        fields = {"aspect_ratio": "16:9"}
    else:
        fields = {"size": Size(1536, 1024)}
    running.fake.script(scenario)
    result = await running.generate(**fields)
    exact = caps.sizes is not None or caps.arbitrary_sizes
    problem = geometry_mismatch(running.request(**fields), result.images[0], exact=exact)
    assert problem is not None, "a 1024×1024 image for a wide request must be a mismatch"
