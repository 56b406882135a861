"""The fal provider: its pure build / read / classify functions with bytes alone, and its queue
loop (poll, deadline, cancel, download) against FakeFal."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from PIL import Image

from imagegate.core.deployment import Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import Size
from imagegate.core.request import Background, ImageRequest, InputImage, Quality
from imagegate.output.mask import to_white_is_edit
from imagegate.providers._http import make_session
from imagegate.providers.fal import (
    FalProvider,
    app_root,
    build_submit,
    capabilities_for,
    image_urls,
    job_of,
)
from imagegate.providers.fal_failures import classify_completed, classify_failure
from imagegate.router.plan import find_gap
from tests.fakes.fal import FakeFal

K = FailureKind
KEY = UpstreamKey("fal:1", "key-id:key-secret")
FAST = {"poll_seconds": 0.005, "poll_max_seconds": 0.02}


def deployment(model: str, base_url: str = "https://queue.fal.run", **options: Any) -> Deployment:
    return Deployment(
        name="fal-test",
        provider_name="fal",
        kind="fal",
        model=model,
        base_url=base_url,
        options={**FAST, **options},
    )


def request(model: str = "fal-ai/flux-2-pro", **fields: Any) -> ImageRequest:
    return ImageRequest(prompt="a lighthouse", model=model, **fields)


def submit_input(model: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    """(url, input) of the submit for a request to `model`."""
    d = deployment(model)
    submission = build_submit(request(model, **fields), d, capabilities_for(model))
    return submission.url, submission.input


def png(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def alpha_mask(width: int, height: int) -> bytes:
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def decoded(uri: str) -> bytes:
    head, _, payload = uri.partition(",")
    assert head.startswith("data:") and head.endswith(";base64")
    return base64.b64decode(payload)


# --- building the submit ----------------------------------------------------------------------


def test_flux2_text_to_image_sends_a_pixel_size_and_no_num_images() -> None:
    url, body = submit_input("fal-ai/flux-2-pro", size=Size(1536, 1024), seed=7)
    assert url == "https://queue.fal.run/fal-ai/flux-2-pro"
    assert body == {
        "prompt": "a lighthouse",
        "image_size": {"width": 1536, "height": 1024},
        "seed": 7,
        "enable_safety_checker": True,
    }


def test_an_aspect_ratio_takes_falls_preset_and_a_tier_a_computed_size() -> None:
    assert submit_input("fal-ai/flux-2-pro", aspect_ratio="16:9")[1]["image_size"] == (
        "landscape_16_9"
    )
    assert submit_input("fal-ai/flux-2-pro", aspect_ratio="1:1")[1]["image_size"] == "square_hd"
    # 21:9 has no preset; 2K is bounded by FLUX.2's 2048-pixel side
    assert submit_input("fal-ai/flux-2-pro", aspect_ratio="21:9")[1]["image_size"] == {
        "width": 1568,
        "height": 672,
    }
    size = submit_input("fal-ai/flux-2-pro", aspect_ratio="16:9", resolution="2K")[1]
    assert size["image_size"] == {"width": 2048, "height": 1152}


def test_edits_go_to_the_edit_app_with_every_image_as_a_data_uri() -> None:
    images = tuple(InputImage(png(8, 8, (i, i, i)), "image/png") for i in range(3))
    url, body = submit_input("fal-ai/flux-2-pro", input_images=images)
    assert url == "https://queue.fal.run/fal-ai/flux-2-pro/edit"
    assert [decoded(uri) for uri in body["image_urls"]] == [image.data for image in images]
    # a deployment of the edit app still makes images from text on its sibling
    url, _ = submit_input("fal-ai/flux-2-pro/edit")
    assert url == "https://queue.fal.run/fal-ai/flux-2-pro"


def test_a_mask_goes_to_the_inpainting_app_white_is_edit() -> None:
    image, mask = png(64, 32), alpha_mask(64, 32)
    model = "fal-ai/flux/dev"
    white = to_white_is_edit(mask)
    req = request(
        model, input_images=(InputImage(image, "image/png"),), mask=InputImage(mask, "image/png")
    )
    submission = build_submit(req, deployment(model), capabilities_for(model), white)
    assert submission.url.endswith("/fal-ai/flux-lora/inpainting")
    assert decoded(submission.input["image_url"]) == image
    with Image.open(io.BytesIO(decoded(submission.input["mask_url"]))) as received:
        assert received.convert("L").getpixel((5, 16)) == 255  # the transparent half: edit
        assert received.convert("L").getpixel((60, 16)) == 0


def test_image_to_image_takes_one_image_url_and_says_the_size_was_not_sent() -> None:
    model = "fal-ai/flux/dev"
    req = request(model, n=2, size=Size(1024, 1024), input_images=(InputImage(png(8, 8), "x"),))
    submission = build_submit(req, deployment(model), capabilities_for(model))
    assert submission.url.endswith("/fal-ai/flux/dev/image-to-image")
    assert "image_size" not in submission.input and "image_url" in submission.input
    assert submission.input["num_images"] == 2
    assert submission.notes and "not sent" in submission.notes[0]


def test_nano_banana_takes_aspect_ratio_and_resolution() -> None:
    body = submit_input("fal-ai/nano-banana-pro", aspect_ratio="9:16", resolution="4K", n=3)[1]
    assert (body["aspect_ratio"], body["resolution"], body["num_images"]) == ("9:16", "4K", 3)
    assert "enable_safety_checker" not in body  # Gemini models on fal take safety_tolerance
    # a pixel size becomes the nearest ratio and its tier; 2.5 Flash has no resolution field
    body = submit_input("fal-ai/nano-banana", size=Size(1536, 1024))[1]
    assert body["aspect_ratio"] == "3:2" and "resolution" not in body
    body = submit_input("fal-ai/nano-banana-pro", size=Size(2048, 2048))[1]
    assert (body["aspect_ratio"], body["resolution"]) == ("1:1", "2K")


def test_gpt_image_takes_named_sizes_quality_and_background_but_no_seed() -> None:
    body = submit_input(
        "fal-ai/gpt-image-1.5",
        aspect_ratio="2:3",
        quality=Quality.LOW,
        background=Background.TRANSPARENT,
        output_format="webp",
    )[1]
    assert body["image_size"] == "1024x1536"
    assert (body["quality"], body["background"], body["output_format"]) == (
        "low",
        "transparent",
        "webp",
    )
    caps = capabilities_for("fal-ai/gpt-image-1.5")
    gap = find_gap(caps, request("fal-ai/gpt-image-1.5", seed=1))
    assert gap is not None and gap.param == "seed"


def test_output_formats_the_model_lacks_are_left_to_the_gateway() -> None:
    body = submit_input("fal-ai/flux-2-pro", output_format="webp")[1]
    assert "output_format" not in body  # FLUX makes jpeg/png; the gateway transcodes
    # a compressed JPEG is asked as PNG: the gateway's transcoding applies the compression
    url = "fal-ai/flux-2-pro"
    d = deployment(url)
    compressed = request(url, output_format="jpeg", output_compression=40)
    submission = build_submit(compressed, d, capabilities_for(url))
    assert submission.input["output_format"] == "png" and submission.notes


def test_passthrough_and_the_safety_checker_option_reach_the_input() -> None:
    model = "fal-ai/flux-2-pro"
    d = deployment(model, enable_safety_checker=False)
    req = request(model, passthrough={"fal": {"safety_tolerance": "5", "sync_mode": True}})
    body = build_submit(req, d, capabilities_for(model)).input
    assert body["enable_safety_checker"] is False
    assert (body["safety_tolerance"], body["sync_mode"]) == ("5", True)


def test_an_unknown_app_is_framed_by_presets_only() -> None:
    caps = capabilities_for("someone/their-model")
    assert not caps.arbitrary_sizes and caps.max_n == 1 and caps.max_input_images == 0
    assert submit_input("someone/their-model", size=Size(1024, 768))[1]["image_size"] == (
        "landscape_4_3"
    )


def test_a_field_no_app_of_the_family_takes_is_refused_not_dropped() -> None:
    # Only reachable when a config override claims more than the family's apps take.
    model = "fal-ai/flux-2-pro"
    for fields, param in (
        ({"mask": InputImage(alpha_mask(8, 8), "image/png")}, "mask"),
        ({"n": 2}, "n"),
        ({"quality": Quality.HIGH}, "quality"),
    ):
        with pytest.raises(UpstreamError) as caught:
            build_submit(request(model, **fields), deployment(model), capabilities_for(model))
        assert (caught.value.kind, caught.value.param) == (K.BAD_REQUEST, param)


# --- reading the queue's answers ---------------------------------------------------------------


def test_the_queue_urls_come_from_submit_or_drop_the_subpath() -> None:
    answer = {"request_id": "r1", "status_url": "https://q/s", "response_url": "https://q/r"}
    job = job_of(answer, "https://queue.fal.run", "fal-ai/flux-2-pro/edit")
    assert (job.status_url, job.response_url) == ("https://q/s", "https://q/r")
    assert job.cancel_url == "https://queue.fal.run/fal-ai/flux-2-pro/requests/r1/cancel"
    assert app_root("workflows/me/flow/sub") == "workflows/me/flow"
    with pytest.raises(UpstreamError) as caught:
        job_of({"status": "IN_QUEUE"}, "https://queue.fal.run", "fal-ai/x")
    assert caught.value.kind is K.UNAVAILABLE


def test_a_flagged_image_is_a_safety_failure_and_no_image_is_empty() -> None:
    flagged = {"images": [{"url": "https://x/1.png"}], "has_nsfw_concepts": [True]}
    with pytest.raises(UpstreamError) as caught:
        image_urls(flagged)
    assert caught.value.kind is K.SAFETY
    with pytest.raises(UpstreamError) as caught:
        image_urls({"images": []})
    assert caught.value.kind is K.EMPTY
    assert image_urls({"image": {"url": "data:image/png;base64,AA=="}}) == [
        "data:image/png;base64,AA=="
    ]


# --- classifying failures ----------------------------------------------------------------------


def classify(status: int, doc: Any, headers: dict[str, str] | None = None) -> UpstreamError:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return classify_failure(status, headers or {}, body)


def test_fastapi_422_names_the_field() -> None:
    item = {"loc": ["body", "image_size", "width"], "msg": "too big", "type": "less_than_equal"}
    error = classify(422, {"detail": [item]})
    assert error.kind is K.BAD_REQUEST and error.param == "image_size.width"
    assert "image_size.width" in error.diagnosis


def test_content_policy_is_safety_whatever_the_status() -> None:
    item = {"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"}
    assert classify(422, {"detail": [item]}).kind is K.SAFETY
    nested = {"detail": {"error": "content_policy_violation", "message": "no"}}
    assert classify(400, nested).kind is K.SAFETY


def test_auth_billing_and_rate_limits() -> None:
    assert classify(401, {"detail": "No user found for Key ID and Secret"}).kind is K.AUTH
    locked = "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard."
    assert classify(403, {"detail": locked}).kind is K.BILLING
    assert classify(403, {"detail": "User is locked. Reason: Admin lock."}).kind is K.AUTH
    assert classify(402, {"detail": "Payment required"}).kind is K.BILLING
    limited = classify(429, {"detail": "slow down"}, {"retry-after": "3"})
    assert limited.kind is K.RATE_LIMITED and limited.retry_after == 3.0


def test_request_errors_by_error_type_body_or_header() -> None:
    assert classify(504, {"detail": "Request timed out", "error_type": "request_timeout"}).kind is (
        K.TIMEOUT
    )
    by_header = classify(503, {"detail": "no runner"}, {"x-fal-error-type": "startup_timeout"})
    assert by_header.kind is K.TIMEOUT and by_header.provider_code == "startup_timeout"
    scheduling = {"detail": "No runner", "error_type": "runner_scheduling_failure"}
    assert classify(503, scheduling).kind is K.UNAVAILABLE
    assert classify(500, {"detail": "boom", "error_type": "internal_error"}).kind is K.UNAVAILABLE
    assert classify(404, {"detail": "Application not found"}).kind is K.NOT_FOUND


def test_proxy_pages_are_judged_by_status() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head></html>"
    assert classify(502, page).kind is K.UNAVAILABLE
    assert classify(524, b"<!DOCTYPE html><title>524</title>").kind is K.TIMEOUT


def test_completed_errors() -> None:
    assert classify_completed({"status": "COMPLETED", "error": None, "error_type": None}) is None
    policy = {"error": "flagged", "error_type": "content_policy_violation"}
    assert (found := classify_completed(policy)) is not None and found.kind is K.SAFETY
    timeout = {"error": "took too long", "error_type": "request_timeout"}
    assert (found := classify_completed(timeout)) is not None and found.kind is K.TIMEOUT
    runner = {"error": "Internal Server Error", "error_type": "runner_server_error"}
    assert (found := classify_completed(runner)) is not None and found.kind is K.UNAVAILABLE


# --- the queue loop against FakeFal ------------------------------------------------------------


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeFal]:
    async with FakeFal(keys={KEY.secret}) as server:
        yield server


async def generate(fake: FakeFal, model: str, deadline: float = 10, **fields: Any) -> Any:
    session = make_session()
    try:
        provider = FalProvider(deployment(model, fake.base_url), session)
        req = request(model, deadline=time.monotonic() + deadline, **fields)
        return await provider.generate(req, KEY)
    finally:
        await session.close()


async def test_the_deadline_while_in_queue_is_a_timeout_and_cancels_the_job(
    fake: FakeFal,
) -> None:
    fake.script("stuck")
    with pytest.raises(UpstreamError) as caught:
        await generate(fake, "fal-ai/flux-2-pro", deadline=0.4)
    assert caught.value.kind is K.TIMEOUT
    [job] = fake.jobs.values()
    assert job.cancelled
    cancel = [r for r in fake.requests if r.method == "PUT"]
    assert [r.path for r in cancel] == [f"/fal-ai/flux-2-pro/requests/{job.request_id}/cancel"]
    assert cancel[0].headers["authorization"] == f"Key {KEY.secret}"


async def test_a_cancelled_call_cancels_the_job_upstream(fake: FakeFal) -> None:
    fake.script("stuck")
    task = asyncio.create_task(generate(fake, "fal-ai/flux-2-pro"))
    for _ in range(500):  # until the job is being polled
        if any(r.path.endswith("/status") for r in fake.requests):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [job.cancelled for job in fake.jobs.values()] == [True]


async def test_a_job_is_polled_through_its_states_then_every_image_downloaded(
    fake: FakeFal,
) -> None:
    fake.queue_polls, fake.progress_polls = 3, 2
    result = await generate(fake, "fal-ai/flux/dev", n=3, size=Size(1024, 768), seed=5)
    assert [(i.format, i.width, i.height) for i in result.images] == [("jpeg", 1024, 768)] * 3
    polls = [r for r in fake.requests if r.path.endswith("/status")]
    assert len(polls) == 6  # 3 IN_QUEUE, 2 IN_PROGRESS, then COMPLETED
    submit = fake.requests[0]
    assert submit.path == "/fal-ai/flux/dev" and submit.json is not None
    assert submit.json["num_images"] == 3 and submit.json["seed"] == 5
    assert float(submit.headers["x-fal-request-timeout"]) > 1
    files = [r for r in fake.requests if r.path.startswith("/_files/")]
    assert not files  # downloads are not upstream calls: not recorded, and carry no key


async def test_sync_mode_images_arrive_as_data_uris(fake: FakeFal) -> None:
    result = await generate(
        fake, "fal-ai/nano-banana", passthrough={"fal": {"sync_mode": True}}, aspect_ratio="4:3"
    )
    assert [(i.format, i.width, i.height) for i in result.images] == [("png", 1184, 864)]


async def test_an_invalid_input_is_a_bad_request_naming_the_field(fake: FakeFal) -> None:
    with pytest.raises(UpstreamError) as caught:
        await generate(fake, "fal-ai/flux-2-pro", passthrough={"fal": {"seed": "seven"}})
    assert caught.value.kind is K.BAD_REQUEST and caught.value.param == "seed"
