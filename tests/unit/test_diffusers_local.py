"""The local diffusers provider: pure mapping, and real images from a tiny random-weight pipeline.

The pipeline is built in the test session from small configs and seeded random weights
(tests/fakes/tiny_pipeline.py), saved to a temporary folder and loaded by the provider the way a
real model folder is. Everything runs on the CPU; nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from imagegate.core.deployment import Deployment
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.geometry import Size
from imagegate.core.request import Background, ImageRequest, InputImage, Quality
from imagegate.core.result import ImageResult
from imagegate.providers import registry
from imagegate.providers.diffusers_local import (
    KNOWN_IMG2IMG,
    KNOWN_INPAINT,
    LocalDiffusersProvider,
    PipelineFacts,
    capabilities_for,
    failure_for,
    output_size,
    plan_call,
    read_facts,
    settings_for,
)
from imagegate.providers.diffusers_pipelines import DERIVED, PipelineUnusable, Stopped
from imagegate.router.plan import find_gap
from tests.fakes.tiny_pipeline import build_tiny_pipeline

HAS_DIFFUSERS = importlib.util.find_spec("diffusers") is not None
needs_torch = pytest.mark.skipif(not HAS_DIFFUSERS, reason="the `local` extra is not installed")
SD = PipelineFacts("StableDiffusionPipeline", vae_scale_factor=8, native_edge=512)


def deployment(model: str = "tiny", **options: Any) -> Deployment:
    return Deployment("local-test", "local", "local", model, "local://", options=options)


def request(**fields: Any) -> ImageRequest:
    fields.setdefault("prompt", "a lighthouse on a cliff")
    fields.setdefault("deadline", time.monotonic() + 60)
    return ImageRequest(model="tiny", **fields)


def png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def left_half_mask(width: int, height: int) -> bytes:
    """OpenAI's convention: the left half transparent (edit), the right half opaque (keep)."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


async def pixels(result: ImageResult, index: int = 0) -> Image.Image:
    raw = base64.b64decode(await result.images[index].source.read())
    with Image.open(io.BytesIO(raw)) as opened:
        opened.load()
        assert (opened.format or "").lower() == result.images[index].format
        return opened.copy()


async def raw_bytes(result: ImageResult) -> list[bytes]:
    return [base64.b64decode(await image.source.read()) for image in result.images]


# --- what the folder and the options declare (no torch) ------------------------------------


def write_folder(root: Path, index: dict[str, Any], configs: dict[str, dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_bytes(orjson.dumps(index))
    for name, config in configs.items():
        (root / name).mkdir()
        (root / name / "config.json").write_bytes(orjson.dumps(config))
    return root


def test_facts_come_from_the_folder_config_files(tmp_path: Path) -> None:
    sd15 = write_folder(
        tmp_path / "sd15",
        {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]},
        {"vae": {"block_out_channels": [128, 256, 512, 512]}, "unet": {"sample_size": 64}},
    )
    assert read_facts(sd15) == PipelineFacts("StableDiffusionPipeline", 8, 512, patched=False)
    flux = write_folder(
        tmp_path / "flux",
        {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]},
        {"vae": {"block_out_channels": [128, 256, 512, 512]}, "transformer": {}},
    )
    facts = read_facts(flux)
    assert facts == PipelineFacts("FluxPipeline", 8, 1024, patched=True)
    assert settings_for(deployment(str(flux)), facts).size_multiple == 16
    assert read_facts(tmp_path / "nowhere") == PipelineFacts()


def test_capabilities_follow_the_pipeline_class_and_the_options() -> None:
    caps = capabilities_for(settings_for(deployment(), SD), SD)
    assert caps.arbitrary_sizes and caps.size_multiple == 8 and caps.max_edge == 1024
    assert caps.resolutions == ("512", "1K")
    assert caps.seed and caps.max_n == 4 and not caps.transparent_background
    assert caps.max_input_images == 1 and caps.mask
    assert caps.output_formats == ("png", "jpeg", "webp")
    unknown = PipelineFacts("PixArtSigmaPipeline", 8, 1024, patched=True)
    caps = capabilities_for(settings_for(deployment(), unknown), unknown)
    assert caps.max_input_images == 0 and not caps.mask and caps.size_multiple == 16
    caps = capabilities_for(settings_for(deployment(inpaint=False, max_edge=2048), SD), SD)
    assert caps.mask is False and caps.max_input_images == 1
    assert caps.resolutions == ("512", "1K", "2K")
    assert find_gap(caps, request(size=Size(3000, 300))) is not None
    lcm = "LatentConsistencyModelPipeline"  # diffusers has its img2img, no inpainting
    assert lcm in KNOWN_IMG2IMG and lcm not in KNOWN_INPAINT


def test_bad_options_are_configuration_errors_naming_the_option() -> None:
    with pytest.raises(ConfigError) as raised:
        settings_for(deployment(device="gpu", steps=0, max_n="4", strength=2.0), SD)
    problems = "\n".join(raised.value.problems)
    for name in ("options.device", "options.steps", "options.max_n", "options.strength"):
        assert f"deployments.local-test.{name}" in problems
    assert settings_for(deployment(device="cuda:1"), SD).device == "cuda:1"


@needs_torch
def test_the_img2img_and_inpaint_classes_named_exist_in_diffusers() -> None:
    import diffusers

    exported = set(dir(diffusers))  # the lazy module lists its names without importing them
    for text2image, derived in DERIVED.items():
        assert text2image in exported
        for name in derived:
            assert name is None or name in exported, name


# --- build: request → pipeline call (no torch) ---------------------------------------------


def test_sizes_come_from_the_size_the_ratio_and_tier_or_the_edit_input() -> None:
    settings = settings_for(deployment(), SD)
    assert output_size(request(size=Size(768, 512)), settings, SD) == Size(768, 512)
    assert output_size(request(aspect_ratio="16:9"), settings, SD) == Size(680, 384)  # 512 tier
    assert output_size(request(aspect_ratio="16:9", resolution="1K"), settings, SD) == Size(
        1024, 576
    )
    edit = request(input_images=(InputImage(png(301, 203, (1, 2, 3)), "image/png"),))
    assert output_size(edit, settings, SD) == Size(304, 200)
    huge = request(input_images=(InputImage(png(3000, 1500, (1, 2, 3)), "image/png"),))
    assert output_size(huge, settings, SD) == Size(1024, 512)
    assert output_size(request(), settings, SD) == Size(512, 512)


def test_quality_scales_the_steps_and_passthrough_fields_reach_the_call() -> None:
    settings = settings_for(deployment(steps=20, guidance_scale=5.0), SD)
    steps = {
        quality: plan_call(request(quality=quality), settings, SD, 50, seed=1).steps
        for quality in Quality
    }
    assert steps == {Quality.AUTO: 20, Quality.LOW: 10, Quality.MEDIUM: 20, Quality.HIGH: 30}
    assert plan_call(request(), settings_for(deployment(), SD), SD, 50, seed=1).steps == 50
    extra = {"local": {"negative_prompt": "blurry", "guidance_scale": 2, "num_inference_steps": 7}}
    plan = plan_call(request(passthrough=extra, n=3, seed=9), settings, SD, 50, seed=9)
    assert (plan.negative_prompt, plan.guidance_scale, plan.steps) == ("blurry", 2.0, 7)
    assert (plan.n, plan.seed, plan.mode) == (3, 9, "text2img")
    with pytest.raises(UpstreamError) as raised:
        plan_call(request(passthrough={"local": {"strength": "lots"}}), settings, SD, 50, seed=1)
    assert raised.value.kind is FailureKind.BAD_REQUEST and raised.value.param == "strength"


def test_an_input_image_is_img2img_and_a_mask_inpainting() -> None:
    image = InputImage(png(64, 64, (1, 2, 3)), "image/png")
    mask = InputImage(left_half_mask(64, 64), "image/png")
    settings = settings_for(deployment(strength=0.25, steps=2), SD)
    plan = plan_call(request(input_images=(image,)), settings, SD, None, seed=1)
    assert plan.mode == "img2img" and plan.image == image.data and plan.strength == 0.25
    assert plan.steps == 4, "img2img runs int(steps × strength) steps: at least one"
    plan = plan_call(request(input_images=(image,), mask=mask), settings, SD, None, seed=1)
    assert plan.mode == "inpaint" and plan.mask == mask.data
    no_inpaint = settings_for(deployment(inpaint=False), SD)
    with pytest.raises(UpstreamError) as raised:
        plan_call(request(input_images=(image,), mask=mask), no_inpaint, SD, None, seed=1)
    assert raised.value.kind is FailureKind.NOT_FOUND and raised.value.param == "mask"


def test_failures_map_to_their_kinds() -> None:
    missing = PipelineUnusable("no folder", missing=True, detail="/models/x")
    assert failure_for(missing).kind is FailureKind.NOT_FOUND
    assert failure_for(missing).provider_message == "/models/x"
    broken = PipelineUnusable("could not be loaded", missing=False)
    assert failure_for(broken).kind is FailureKind.UNAVAILABLE
    memory = PipelineUnusable("the local pipeline ran out of memory while loading", missing=False)
    assert failure_for(memory).kind is FailureKind.CAPACITY
    assert failure_for(Stopped("deadline", 3)).kind is FailureKind.TIMEOUT
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate")
    assert failure_for(oom).kind is FailureKind.CAPACITY
    assert failure_for(RuntimeError("shapes do not match")).kind is FailureKind.UNAVAILABLE
    refused = failure_for(ValueError("`num_inference_steps`: 5000 cannot be larger than 1000"))
    assert refused.kind is FailureKind.BAD_REQUEST and "5000" in refused.diagnosis


def test_the_registry_builds_it_without_loading_anything(tmp_path: Path) -> None:
    cls = registry.provider_class("local")
    provider = cls(deployment(str(tmp_path / "not-yet")), None)  # type: ignore[arg-type]
    assert cls is LocalDiffusersProvider and not cls.needs_key
    assert provider.capabilities.seed and provider.capabilities.max_input_images == 0


# --- the provider on a real tiny pipeline (CPU) -------------------------------------------


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_DIFFUSERS:
        pytest.skip("the `local` extra is not installed")
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "pipeline")


@pytest.fixture
def provider(tiny_pipeline: Path) -> LocalDiffusersProvider:
    return LocalDiffusersProvider(deployment(str(tiny_pipeline), steps=2), None)  # type: ignore[arg-type]


async def test_it_makes_real_pngs_at_the_asked_size_n_at_once(
    provider: LocalDiffusersProvider,
) -> None:
    result = await provider.generate(request(size=Size(96, 64), n=2), None)
    assert [image.size for image in result.images] == [Size(96, 64)] * 2
    first, second = await pixels(result, 0), await pixels(result, 1)
    assert first.size == (96, 64) and first.tobytes() != second.tobytes()
    assert result.provider == "local" and result.model == provider.deployment.model
    assert "StableDiffusionPipeline" in result.notes[0] and "2 steps" in result.notes[0]
    call = provider.last_call
    assert call is not None and call.arguments["num_images_per_prompt"] == 2
    assert (call.arguments["width"], call.arguments["height"]) == (96, 64)


async def test_the_same_seed_gives_the_same_bytes(provider: LocalDiffusersProvider) -> None:
    one = await raw_bytes(await provider.generate(request(size=Size(64, 64), seed=7), None))
    again = await raw_bytes(await provider.generate(request(size=Size(64, 64), seed=7), None))
    other = await raw_bytes(await provider.generate(request(size=Size(64, 64), seed=8), None))
    assert one == again and one != other
    unseeded = await provider.generate(request(size=Size(64, 64)), None)
    assert "seed " in unseeded.notes[0], "a random seed is told, so the image can be made again"


async def test_jpeg_and_webp_honour_the_compression(provider: LocalDiffusersProvider) -> None:
    for fmt in ("jpeg", "webp"):
        small = await provider.generate(
            request(size=Size(128, 128), seed=3, output_format=fmt, output_compression=10), None
        )
        fine = await provider.generate(
            request(size=Size(128, 128), seed=3, output_format=fmt, output_compression=100), None
        )
        assert small.images[0].format == fmt and (await pixels(small)).size == (128, 128)
        assert len(await raw_bytes(small)) == 1
        assert len((await raw_bytes(small))[0]) < len((await raw_bytes(fine))[0])


async def test_an_input_image_is_edited_at_its_own_size(provider: LocalDiffusersProvider) -> None:
    source = InputImage(png(80, 48, (200, 40, 40)), "image/png")
    result = await provider.generate(request(input_images=(source,), seed=1, n=2), None)
    assert [image.size for image in result.images] == [Size(80, 48)] * 2
    call = provider.last_call
    assert call is not None and call.plan.mode == "img2img" and call.image is not None
    assert call.arguments["prompt"] == [call.plan.prompt] * 2, "n copies, one init image each"
    assert call.image.getpixel((5, 5)) == (200, 40, 40)
    assert "img2img" in result.notes[0]


async def test_a_mask_inpaints_and_keeps_the_pixels_outside_it(
    provider: LocalDiffusersProvider,
) -> None:
    source = InputImage(png(64, 64, (200, 40, 40)), "image/png")
    mask = InputImage(left_half_mask(64, 64), "image/png")
    result = await provider.generate(request(input_images=(source,), mask=mask, seed=1), None)
    image = (await pixels(result)).convert("RGB")
    assert image.getpixel((48, 32)) == (200, 40, 40), "outside the mask: the input's pixels"
    assert image.getpixel((16, 32)) != (200, 40, 40), "inside the mask: redrawn"
    call = provider.last_call
    assert call is not None and call.plan.mode == "inpaint" and call.mask is not None
    assert call.mask.getpixel((16, 32)) == 255 and call.mask.getpixel((48, 32)) == 0


async def test_negative_prompt_and_guidance_reach_the_pipeline(
    provider: LocalDiffusersProvider,
) -> None:
    extra = {"local": {"negative_prompt": "blurry", "guidance_scale": 3.5}}
    await provider.generate(request(size=Size(64, 64), passthrough=extra), None)
    call = provider.last_call
    assert call is not None
    assert call.arguments["negative_prompt"] == "blurry"
    assert call.arguments["guidance_scale"] == 3.5


async def test_the_event_loop_keeps_running_while_the_pipeline_works(
    provider: LocalDiffusersProvider,
) -> None:
    await provider.generate(request(size=Size(64, 64)), None)  # loaded: only the run is timed
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            await asyncio.sleep(0.005)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    extra = {"local": {"num_inference_steps": 40}}
    started = time.monotonic()
    await provider.generate(request(size=Size(128, 128), passthrough=extra), None)
    took = time.monotonic() - started
    running = False
    await ticking
    # Run on the loop, the call would have let the ticker run zero times while it worked.
    assert ticks >= 5, f"{ticks} ticks in {took:.2f} s of generation"


async def test_a_deadline_passing_mid_run_stops_the_pipeline_between_steps(
    provider: LocalDiffusersProvider,
) -> None:
    await provider.generate(request(size=Size(64, 64)), None)
    long_run = {"local": {"num_inference_steps": 900}}  # seconds; DDIM takes up to 999
    started = time.monotonic()
    with pytest.raises(UpstreamError) as raised:
        await provider.generate(
            request(size=Size(64, 64), passthrough=long_run, deadline=time.monotonic() + 0.5),
            None,
        )
    assert raised.value.kind is FailureKind.TIMEOUT
    assert time.monotonic() - started < 30
    # The slot is free again once the stopped call's thread ends: the next call runs.
    result = await provider.generate(request(size=Size(64, 64)), None)
    assert len(result.images) == 1


async def test_a_cancelled_request_stops_its_pipeline_run(provider: LocalDiffusersProvider) -> None:
    await provider.generate(request(size=Size(64, 64)), None)
    long_run = {"local": {"num_inference_steps": 900}}  # seconds; DDIM takes up to 999
    task = asyncio.create_task(
        provider.generate(request(size=Size(128, 128), passthrough=long_run), None)
    )
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    result = await asyncio.wait_for(provider.generate(request(size=Size(64, 64)), None), 30)
    assert len(result.images) == 1


async def test_a_passed_deadline_runs_nothing(provider: LocalDiffusersProvider) -> None:
    with pytest.raises(UpstreamError) as raised:
        await provider.generate(request(deadline=time.monotonic() - 1), None)
    assert raised.value.kind is FailureKind.TIMEOUT
    assert provider.last_call is None


async def test_a_missing_folder_is_a_clear_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    provider = LocalDiffusersProvider(deployment(str(missing)), None)  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as raised:
        await provider.generate(request(), None)
    assert raised.value.kind is FailureKind.NOT_FOUND
    assert (
        "does not exist" in raised.value.diagnosis and "save_pretrained" in raised.value.diagnosis
    )
    assert str(missing) not in raised.value.diagnosis, "server paths stay in the logs"
    assert str(missing) in (raised.value.provider_message or "")
    empty = tmp_path / "empty"
    empty.mkdir()
    provider = LocalDiffusersProvider(deployment(str(empty)), None)  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as raised:
        await provider.generate(request(), None)
    assert (
        raised.value.kind is FailureKind.NOT_FOUND and "model_index.json" in raised.value.diagnosis
    )


@needs_torch
async def test_a_broken_pipeline_folder_is_unavailable(tiny_pipeline: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    provider = LocalDiffusersProvider(deployment(str(broken)), None)  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as raised:
        await provider.generate(request(), None)
    assert raised.value.kind is FailureKind.UNAVAILABLE
    assert "could not be loaded" in raised.value.diagnosis


async def test_a_transparent_background_is_refused_never_dropped(
    provider: LocalDiffusersProvider,
) -> None:
    gap = find_gap(provider.capabilities, request(background=Background.TRANSPARENT))
    assert gap is not None and gap.param == "background"
    with pytest.raises(UpstreamError) as raised:
        await provider.generate(request(background=Background.TRANSPARENT), None)
    assert raised.value.param == "background"


async def test_through_the_gateway_with_the_openai_sdk(
    tiny_pipeline: Path, start_gateway: Any, openai_client: Any
) -> None:
    base = await start_gateway(
        {
            "providers": {"here": {"kind": "local"}},
            "deployments": {
                "tiny": {"provider": "here", "model": str(tiny_pipeline), "options": {"steps": 2}}
            },
            "routes": {"tiny-sd": ["tiny"]},
        }
    )
    answer = await openai_client(base).images.generate(
        model="tiny-sd", prompt="a lighthouse", size="512x384", n=2
    )
    assert len(answer.data) == 2
    with Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json or ""))) as image:
        assert image.size == (512, 384)
