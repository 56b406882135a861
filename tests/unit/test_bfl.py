"""BFL provider: the pure build / parse / classify functions, and the poll loop against FakeBfl."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import orjson
import pytest
from PIL import Image

from imagegate.core.deployment import Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import Size
from imagegate.core.request import Background, ImageRequest, InputImage, Quality
from imagegate.core.result import ImageResult
from imagegate.providers import registry
from imagegate.providers._http import make_session
from imagegate.providers.bfl import (
    BflProvider,
    Task,
    book_task,
    build_submit,
    capabilities_for,
    family_for,
    parse_submit,
    read_poll,
)
from imagegate.providers.bfl_failures import classify_failure, classify_poll_failure
from tests.fakes.bfl import FakeBfl

K = FailureKind
BASE = "https://api.bfl.ai"


def deployment(model: str, base_url: str = BASE, **options: Any) -> Deployment:
    return Deployment("d", "bfl", "bfl", model, base_url, options=options)


def request(**fields: Any) -> ImageRequest:
    fields.setdefault("prompt", "a lighthouse at dusk")
    return ImageRequest(model="flux", **fields)


def png(width: int, height: int, mode: str = "RGB", color: Any = (10, 20, 30)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), color).save(out, "PNG")
    return out.getvalue()


def body_of(req: ImageRequest, model: str, **options: Any) -> dict[str, Any]:
    return build_submit(req, deployment(model, **options)).body


# --- families and capabilities ------------------------------------------------------------------


def test_the_registry_knows_the_kind() -> None:
    assert registry.provider_class("bfl") is BflProvider


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("flux-2-pro", "FLUX.2"),
        ("flux-2-klein-4b", "FLUX.2"),
        ("flux-2-flex", "FLUX.2 [flex]"),
        ("flux-kontext-max", "FLUX.1 Kontext"),
        ("flux-pro-1.1", "FLUX1.1 [pro]"),
        ("flux-pro-1.1-ultra", "FLUX1.1 [pro] Ultra"),
        ("flux-pro-1.0-fill", "FLUX.1 Fill [pro]"),
        ("flux-dev", "FLUX.1"),
    ],
)
def test_each_model_belongs_to_its_family(model: str, family: str) -> None:
    assert family_for(model).name == family


def test_capabilities_follow_the_family() -> None:
    flux2, kontext = capabilities_for("flux-2-pro"), capabilities_for("flux-kontext-pro")
    assert (flux2.max_n, flux2.arbitrary_sizes, flux2.size_multiple) == (1, True, 16)
    assert (flux2.max_pixels, flux2.max_input_images, flux2.mask) == (2048 * 2048, 8, False)
    assert kontext.arbitrary_sizes is False and kontext.max_input_images == 4
    assert capabilities_for("flux-pro-1.1").max_edge == 1440
    assert capabilities_for("flux-pro-1.1-ultra").resolutions == ("2K",)
    fill = capabilities_for("flux-pro-1.0-fill")
    assert fill.mask and fill.max_input_images == 1
    for model in ("flux-2-pro", "flux-kontext-pro", "flux-pro-1.1-ultra", "flux-pro-1.0-fill"):
        caps = capabilities_for(model)
        assert caps.seed and caps.qualities == ("auto",) and "webp" not in caps.output_formats


# --- building the submit ------------------------------------------------------------------------


def test_a_flux2_submit_carries_the_size_seed_and_format() -> None:
    submission = build_submit(
        request(size=Size(1536, 1024), seed=7, output_format="png"), deployment("flux-2-pro")
    )
    assert submission.url == f"{BASE}/v1/flux-2-pro"
    assert submission.body == {
        "prompt": "a lighthouse at dusk",
        "width": 1536,
        "height": 1024,
        "seed": 7,
        "output_format": "png",
    }


def test_no_geometry_leaves_the_endpoint_default() -> None:
    assert body_of(request(), "flux-2-pro") == {"prompt": "a lighthouse at dusk"}


def test_an_aspect_ratio_becomes_a_size_on_width_height_endpoints() -> None:
    body = body_of(request(aspect_ratio="16:9", resolution="2K"), "flux-2-pro")
    assert (body["width"], body["height"]) == (2048, 1152)
    body = body_of(request(aspect_ratio="21:9"), "flux-pro-1.1")
    assert body["width"] <= 1440 and body["width"] % 32 == 0 and body["height"] % 32 == 0
    assert "aspect_ratio" not in body


def test_a_size_becomes_the_nearest_ratio_on_ratio_endpoints() -> None:
    assert body_of(request(size=Size(1536, 1024)), "flux-kontext-pro")["aspect_ratio"] == "3:2"
    assert body_of(request(size=Size(1792, 1024)), "flux-pro-1.1-ultra")["aspect_ratio"] == "16:9"
    assert body_of(request(aspect_ratio="9:16"), "flux-kontext-pro")["aspect_ratio"] == "9:16"


def test_input_images_go_in_the_family_fields_as_base64() -> None:
    images = tuple(InputImage(png(8, 8, color=(i, 0, 0)), "image/png") for i in range(8))
    body = body_of(request(input_images=images), "flux-2-pro")
    assert base64.b64decode(body["input_image"]) == images[0].data
    assert base64.b64decode(body["input_image_8"]) == images[7].data
    body = body_of(request(input_images=images[:1]), "flux-pro-1.1")
    assert base64.b64decode(body["image_prompt"]) == images[0].data


def test_what_bfl_cannot_do_is_refused_naming_the_field() -> None:
    five = tuple(InputImage(png(8, 8), "image/png") for _ in range(5))
    mask = InputImage(png(8, 8, "RGBA", (0, 0, 0, 0)), "image/png")
    cases = [
        (request(input_images=five), "flux-kontext-pro", "image"),
        (request(input_images=five[:1], mask=mask), "flux-2-pro", "mask"),
        (request(background=Background.TRANSPARENT), "flux-2-pro", "background"),
        (request(quality=Quality.HIGH), "flux-2-pro", "quality"),
    ]
    for req, model, param in cases:
        with pytest.raises(UpstreamError) as caught:
            build_submit(req, deployment(model))
        assert caught.value.kind is K.BAD_REQUEST and caught.value.param == param


def test_formats_bfl_cannot_make_are_asked_as_png_for_the_gateway_to_transcode() -> None:
    assert body_of(request(output_format="webp"), "flux-2-pro")["output_format"] == "png"
    # no compression setting upstream: PNG, encoded by the gateway at the asked compression
    req = request(output_format="jpeg", output_compression=40)
    submission = build_submit(req, deployment("flux-2-pro"))
    assert submission.body["output_format"] == "png" and submission.notes
    assert body_of(request(output_format="jpeg"), "flux-2-pro")["output_format"] == "jpeg"


def test_fill_sends_the_mask_white_where_the_client_erased() -> None:
    mask_img = Image.new("RGBA", (64, 32), (0, 0, 0, 255))
    mask_img.paste((0, 0, 0, 0), (0, 0, 32, 32))  # left half: edit
    out = io.BytesIO()
    mask_img.save(out, "PNG")
    image = InputImage(png(64, 32), "image/png")
    body = body_of(
        request(input_images=(image,), mask=InputImage(out.getvalue(), "image/png")),
        "flux-pro-1.0-fill",
    )
    assert base64.b64decode(body["image"]) == image.data
    with Image.open(io.BytesIO(base64.b64decode(body["mask"]))) as sent:
        assert sent.size == (64, 32)
        assert sent.convert("L").getpixel((8, 16)) == 255
        assert sent.convert("L").getpixel((56, 16)) == 0


def test_fill_without_an_image_fills_a_blank_canvas_of_the_asked_size() -> None:
    submission = build_submit(request(size=Size(1536, 1024)), deployment("flux-pro-1.0-fill"))
    for name in ("image", "mask"):
        with Image.open(io.BytesIO(base64.b64decode(submission.body[name]))) as sent:
            assert sent.size == (1536, 1024)
    with Image.open(io.BytesIO(base64.b64decode(submission.body["mask"]))) as mask:
        assert mask.convert("L").getextrema() == (255, 255)
    assert any("blank" in note for note in submission.notes)


def test_fill_refuses_a_geometry_other_than_the_input_image() -> None:
    image = InputImage(png(64, 32), "image/png")
    refused: list[tuple[dict[str, Any], str]] = [
        ({"size": Size(64, 64)}, "size"),
        ({"aspect_ratio": "1:1"}, "aspect_ratio"),
        ({"resolution": "2K"}, "resolution"),
    ]
    for fields, param in refused:
        with pytest.raises(UpstreamError) as caught:
            build_submit(request(input_images=(image,), **fields), deployment("flux-pro-1.0-fill"))
        assert caught.value.kind is K.BAD_REQUEST and caught.value.param == param
    ok = build_submit(
        request(input_images=(image,), aspect_ratio="2:1"), deployment("flux-pro-1.0-fill")
    )
    assert "width" not in ok.body


def test_passthrough_fields_are_checked_and_clamped_per_endpoint() -> None:
    req = request(passthrough={"bfl": {"safety_tolerance": 6, "steps": 80, "guidance": 3}})
    submission = build_submit(req, deployment("flux-2-flex"))
    assert submission.body["safety_tolerance"] == 5  # FLUX.2: 0–5
    assert submission.body["steps"] == 50 and submission.body["guidance"] == 3.0
    assert any("safety_tolerance 6" in note for note in submission.notes)
    # Kontext with an input image allows at most 2
    image = InputImage(png(8, 8), "image/png")
    req = request(input_images=(image,), passthrough={"bfl": {"safety_tolerance": 5}})
    assert body_of(req, "flux-kontext-pro")["safety_tolerance"] == 2
    req = request(passthrough={"bfl": {"raw": True, "prompt_upsampling": True}})
    assert body_of(req, "flux-pro-1.1-ultra") | {"prompt": ""} == {
        "prompt": "",
        "raw": True,
        "prompt_upsampling": True,
    }


def test_deployment_defaults_sit_under_the_request_passthrough() -> None:
    options = {"defaults": {"safety_tolerance": 1, "prompt_upsampling": True}}
    req = request(passthrough={"bfl": {"safety_tolerance": 4}})
    body = body_of(req, "flux-2-pro", **options)
    assert body["safety_tolerance"] == 4 and body["prompt_upsampling"] is True


@pytest.mark.parametrize(
    ("model", "extra", "param"),
    [
        ("flux-2-pro", {"raw": True}, "bfl.raw"),  # Ultra only
        ("flux-2-pro", {"steps": 20}, "bfl.steps"),  # flex only
        ("flux-2-pro", {"width": 512}, "bfl.width"),  # a unified field
        ("flux-pro-1.1-ultra", {"raw": "yes"}, "bfl.raw"),
        ("flux-2-flex", {"steps": "many"}, "bfl.steps"),
    ],
)
def test_passthrough_fields_the_endpoint_does_not_take_are_refused(
    model: str, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(UpstreamError) as caught:
        build_submit(request(passthrough={"bfl": extra}), deployment(model))
    assert caught.value.kind is K.BAD_REQUEST and caught.value.param == param


# --- parsing answers ----------------------------------------------------------------------------


def test_a_submit_answer_gives_the_task_and_its_cost() -> None:
    answer = {
        "id": "a1b2",
        "polling_url": "https://api.eu.bfl.ai/v1/get_result?id=a1b2",
        "cost": 3.0,
        "input_mp": 0,
        "output_mp": 1.57,
    }
    assert parse_submit(answer, BASE) == Task(
        "a1b2", "https://api.eu.bfl.ai/v1/get_result?id=a1b2", 3.0, 0.0, 1.57
    )
    assert parse_submit({"id": "x y"}, BASE).polling_url == f"{BASE}/v1/get_result?id=x%20y"
    with pytest.raises(UpstreamError) as caught:
        parse_submit({"detail": "?"}, BASE)
    assert caught.value.kind is K.UNAVAILABLE
    with pytest.raises(UpstreamError):  # polls carry the key: never to a clear-text URL
        parse_submit({"id": "t", "polling_url": "http://api.bfl.ai/v1/get_result?id=t"}, BASE)


def test_polls_read_pending_ready_and_each_terminal_status() -> None:
    assert not read_poll({"id": "t", "status": "Pending", "progress": 0.4}, "t").ready
    ready = read_poll(
        {"status": "Ready", "result": {"sample": "https://d/s.png", "prompt": "p", "seed": 7}},
        "t",
    )
    assert ready.sample == "https://d/s.png" and ready.prompt == "p"
    kinds = {
        "Request Moderated": (K.SAFETY, "input"),
        "Content Moderated": (K.SAFETY, "output"),
        "Error": (K.UNAVAILABLE, "BFL"),
        "Task not found": (K.UNAVAILABLE, "task"),
    }
    for status, (kind, word) in kinds.items():
        details = {"Moderation Reasons": ["NSFW"]}
        with pytest.raises(UpstreamError) as caught:
            read_poll({"status": status, "details": details}, "t")
        assert caught.value.kind is kind and word in caught.value.diagnosis
        assert caught.value.provider_code == status
    with pytest.raises(UpstreamError) as caught:
        read_poll({"status": "Ready", "result": {}}, "t")
    assert caught.value.kind is K.EMPTY


def test_credits_are_noted_and_booked_in_usd_only_with_a_configured_rate() -> None:
    task = Task("t", "u", cost=3.0, input_mp=0.0, output_mp=1.57)
    plain = ImageResult(images=[])
    book_task(task, plain, None)
    assert plain.usage.cost_usd is None and any("3 credits" in n for n in plain.notes)
    priced = ImageResult(images=[])
    book_task(task, priced, 0.01)
    assert priced.usage.cost_usd == pytest.approx(0.03)


# --- classifying failures -----------------------------------------------------------------------


def classify(status: int, doc: Any, headers: dict[str, str] | None = None) -> UpstreamError:
    return classify_failure(status, headers or {}, orjson.dumps(doc))


def test_a_fastapi_422_names_the_field() -> None:
    doc = {
        "detail": [
            {"type": "multiple_of", "loc": ["body", "width"], "msg": "Input should be a multiple of 32", "input": 1000},
            {"type": "less_than_equal", "loc": ["body", "height"], "msg": "Input should be less than or equal to 1440", "input": 2000},
        ]
    }  # fmt: skip
    error = classify(422, doc)
    assert error.kind is K.BAD_REQUEST and error.param == "width"
    assert "width: Input should be a multiple of 32" in error.diagnosis
    assert "height" in error.diagnosis and error.provider_code == "multiple_of"


@pytest.mark.parametrize(
    ("status", "doc", "kind"),
    [
        (400, {"detail": "Invalid image"}, K.BAD_REQUEST),
        (401, {"detail": "Invalid API key"}, K.AUTH),
        (403, {"detail": "Not authenticated"}, K.AUTH),
        (402, {"detail": "Insufficient credits"}, K.BILLING),
        (404, {"detail": "Not Found"}, K.NOT_FOUND),
        (500, {"detail": "Internal Server Error"}, K.UNAVAILABLE),
        (503, {"message": "Service unavailable"}, K.UNAVAILABLE),
        (500, {"error": {"message": "get_channel_failed", "code": "get_channel_failed"}}, K.UNAVAILABLE),
    ],
)  # fmt: skip
def test_statuses_map_to_their_kinds(status: int, doc: Any, kind: FailureKind) -> None:
    assert classify(status, doc).kind is kind


def test_429_is_rate_limited_with_the_retry_hint_from_header_or_body() -> None:
    doc = {"error": "rate_limit_exceeded", "message": "too many active tasks", "retry_after": 5}
    assert classify(429, doc).retry_after == 5.0
    assert classify(429, doc, {"retry-after": "2"}).retry_after == 2.0
    assert classify(429, doc).provider_code == "rate_limit_exceeded"
    assert classify(429, doc).kind is K.RATE_LIMITED


def test_a_404_on_a_poll_means_the_task_is_gone_not_the_model() -> None:
    error = classify_poll_failure(404, {}, b'{"detail":"Not Found"}')
    assert error.kind is K.UNAVAILABLE and error.status == 404 and "task" in error.diagnosis
    assert classify_poll_failure(403, {}, b'{"detail":"Not authenticated"}').kind is K.AUTH


def test_proxy_pages_are_judged_by_their_status() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head></html>"
    assert classify_failure(502, {}, page).kind is K.UNAVAILABLE
    assert classify_failure(524, {}, b"<!DOCTYPE html><title>x | 524</title>").kind is K.TIMEOUT


# --- the poll loop against the fake -------------------------------------------------------------


async def run(
    fake: FakeBfl, model: str, req: ImageRequest, **options: Any
) -> tuple[ImageResult, list[str]]:
    session = make_session()
    try:
        options.setdefault("poll_seconds", 0.01)
        provider = BflProvider(deployment(model, fake.base_url, **options), session)
        result = await provider.generate(req, UpstreamKey("k", "secret-key"))
        return result, [f"{r.method} {r.path}" for r in fake.requests]
    finally:
        await session.close()


async def test_a_deadline_reached_while_pending_is_a_timeout() -> None:
    async with FakeBfl() as fake:
        fake.pending_polls = 10_000
        started = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await run(fake, "flux-2-pro", request(deadline=time.monotonic() + 0.5))
        assert caught.value.kind is K.TIMEOUT
        assert time.monotonic() - started < 2.0
        polls = [r for r in fake.requests if r.path == "/v1/get_result"]
        assert len(polls) >= 2, "it polled while the task was Pending"


async def test_the_returned_polling_url_is_used_even_on_another_host() -> None:
    async with FakeBfl() as fake:
        port = fake.base_url.rsplit(":", 1)[1]
        fake.polling_base = f"http://localhost:{port}"
        result, _ = await run(fake, "flux-2-pro", request(deadline=time.monotonic() + 10))
        polls = [r for r in fake.requests if r.path == "/v1/get_result"]
        assert polls and all(r.headers["host"].startswith("localhost") for r in polls)
        assert all(r.headers["x-key"] == "secret-key" for r in polls)
        downloads = [r for r in fake.requests if r.path.startswith("/_results/")]
        assert downloads and "x-key" not in downloads[0].headers
        await result.aclose()


async def test_a_finished_task_books_its_credits_and_waits_through_pending() -> None:
    async with FakeBfl() as fake:
        fake.pending_polls = 3
        req = request(size=Size(1024, 768), deadline=time.monotonic() + 10)
        result, calls = await run(fake, "flux-2-pro", req, usd_per_credit=0.01)
        assert calls.count("GET /v1/get_result") == 4
        assert result.images[0].size == Size(1024, 768) and result.images[0].format == "jpeg"
        assert result.usage.cost_usd == pytest.approx(0.03)
        assert result.provider == "bfl" and result.model == "flux-2-pro"
        await result.aclose()


async def test_a_passing_poll_failure_does_not_lose_the_task() -> None:
    async with FakeBfl() as fake:
        fake.script("flaky_poll")
        result, calls = await run(fake, "flux-2-pro", request(deadline=time.monotonic() + 10))
        assert calls.count("POST /v1/flux-2-pro") == 1 and result.images
        await result.aclose()


async def test_too_many_active_tasks_is_rate_limited_with_the_hint() -> None:
    async with FakeBfl() as fake:
        fake.max_active = 0
        with pytest.raises(UpstreamError) as caught:
            await run(fake, "flux-2-pro", request())
        assert caught.value.kind is K.RATE_LIMITED and caught.value.retry_after == 5.0


async def test_a_missing_key_is_an_auth_failure_before_any_call() -> None:
    async with FakeBfl() as fake:
        session = make_session()
        try:
            provider = BflProvider(deployment("flux-2-pro", fake.base_url), session)
            with pytest.raises(UpstreamError) as caught:
                await provider.generate(request(), None)
        finally:
            await session.close()
        assert caught.value.kind is K.AUTH and not fake.requests


async def test_an_upstream_422_reaches_the_caller_naming_the_field() -> None:
    async with FakeBfl() as fake:
        # a catalog override that lies about the size multiple: BFL's 422 names the field
        with pytest.raises(UpstreamError) as caught:
            await run(fake, "flux-pro-1.1", request(size=Size(1000, 768)))
        assert caught.value.kind is K.BAD_REQUEST and caught.value.param == "width"
