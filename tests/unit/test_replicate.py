"""The Replicate provider: its pure build / parse / classify functions with bytes alone, then its
prediction loop (wait, poll, cancel at the deadline) against FakeReplicate."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from PIL import Image

from imagegate.catalog import Catalog
from imagegate.core.deployment import Deployment, UpstreamKey
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.geometry import Size
from imagegate.core.request import ImageRequest, InputImage
from imagegate.providers._http import make_session
from imagegate.providers.replicate import (
    ReplicateProvider,
    build_create,
    parse_prediction,
    prefer_wait,
    result_notes,
    settled_outputs,
    shortfall,
)
from imagegate.providers.replicate_failures import classify_failed, classify_failure
from imagegate.providers.replicate_inputs import FLUX2 as FLUX2_CAPS
from imagegate.providers.replicate_inputs import MODELS, capabilities_for, family_for
from tests.fakes.replicate import FakeReplicate

KEY = "r8_test_token"
BASE = "https://api.replicate.com/v1"
FLUX2 = "black-forest-labs/flux-2-pro"
KONTEXT = "black-forest-labs/flux-kontext-pro"
SCHNELL = "black-forest-labs/flux-schnell"
NANO = "google/nano-banana"
NANO_PRO = "google/nano-banana-pro"


def png(width: int = 8, height: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "PNG")
    return out.getvalue()


def deployment(model: str = FLUX2, base_url: str = BASE, **options: Any) -> Deployment:
    return Deployment(
        name="rep",
        provider_name="replicate",
        kind="replicate",
        model=model,
        base_url=base_url,
        keys=(UpstreamKey("rep:KEY", KEY),),
        options=options,
    )


def create(model: str, **fields: Any) -> tuple[str, dict[str, Any], list[str]]:
    dep = deployment(model, **fields.pop("options", {}))
    request = ImageRequest(prompt="a lighthouse", model=model, **fields)
    call = build_create(request, dep, family_for(model))
    return call.url, call.body, call.warnings


# --- endpoints ---------------------------------------------------------------------------------


def test_an_official_model_is_created_under_its_name() -> None:
    url, body, _ = create(FLUX2)
    assert url == f"{BASE}/models/{FLUX2}/predictions"
    assert body == {"input": {"prompt": "a lighthouse"}}


def test_a_pinned_version_goes_to_predictions_with_its_id() -> None:
    model = f"{SCHNELL}:5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"
    url, body, _ = create(model)
    assert url == f"{BASE}/predictions"
    assert body["version"] == model.partition(":")[2]
    assert body["input"]["num_outputs"] == 1  # still the FLUX.1 family


def test_a_deployment_option_goes_to_the_deployments_endpoint() -> None:
    url, body, _ = create(SCHNELL, options={"deployment": "acme/fast-flux"})
    assert url == f"{BASE}/deployments/acme/fast-flux/predictions"
    assert "version" not in body


# --- input per family ---------------------------------------------------------------------------


def test_flux2_takes_any_size_through_custom() -> None:
    _, body, _ = create(FLUX2, size=Size(1536, 1024), seed=7, output_format="jpeg")
    assert body["input"] == {
        "prompt": "a lighthouse",
        "aspect_ratio": "custom",
        "width": 1536,
        "height": 1024,
        "seed": 7,
        "output_format": "jpg",  # Replicate's name for JPEG
    }


def test_flux2_refuses_a_side_under_256_before_calling() -> None:
    with pytest.raises(UpstreamError) as caught:
        create(FLUX2, size=Size(1024, 128))
    assert (caught.value.kind, caught.value.param) == (FailureKind.BAD_REQUEST, "size")


def test_flux2_tiers_become_megapixels_and_compression_output_quality() -> None:
    _, body, _ = create(
        FLUX2, aspect_ratio="16:9", resolution="2K", output_format="webp", output_compression=70
    )
    given = body["input"]
    assert (given["aspect_ratio"], given["resolution"]) == ("16:9", "4 MP")
    assert (given["output_format"], given["output_quality"]) == ("webp", 70)
    _, body, _ = create(FLUX2, resolution="1K")
    assert body["input"]["resolution"] == "1 MP"


def test_flux2_edit_sends_data_uris_and_keeps_the_input_framing() -> None:
    images = (InputImage(png(), "image/png"), InputImage(png(4, 4), "image/png"))
    _, body, _ = create(FLUX2, input_images=images)
    given = body["input"]
    assert given["aspect_ratio"] == "match_input_image"
    assert [base64.b64decode(uri.partition(",")[2]) for uri in given["input_images"]] == [
        image.data for image in images
    ]
    assert given["input_images"][0].startswith("data:image/png;base64,")


def test_kontext_takes_one_image_and_names_what_it_cannot_do() -> None:
    image = InputImage(png(), "image/png")
    _, body, notes = create(
        KONTEXT, input_images=(image,), output_format="jpeg", output_compression=50
    )
    given = body["input"]
    assert given["input_image"].startswith("data:image/png;base64,")
    assert given["aspect_ratio"] == "match_input_image"
    assert "output_quality" not in given
    assert any("output_compression" in note for note in notes)


def test_kontext_lowers_a_passthrough_tolerance_above_2_with_an_image() -> None:
    image = InputImage(png(), "image/png")
    passthrough = {"replicate": {"safety_tolerance": 6}}
    _, body, notes = create(KONTEXT, input_images=(image,), passthrough=passthrough)
    assert body["input"]["safety_tolerance"] == 2
    assert any("safety_tolerance 6 lowered to 2" in note for note in notes)
    _, body, notes = create(KONTEXT, passthrough=passthrough)  # no image: 6 is allowed
    assert body["input"]["safety_tolerance"] == 6 and not notes


def test_kontext_maps_a_size_to_its_nearest_ratio() -> None:
    _, body, _ = create(KONTEXT, size=Size(1536, 1024))
    assert body["input"]["aspect_ratio"] == "3:2"


def test_flux1_asks_n_images_in_one_call_and_megapixels_by_tier() -> None:
    _, body, _ = create(SCHNELL, n=4, aspect_ratio="21:9", resolution="512")
    given = body["input"]
    assert (given["num_outputs"], given["aspect_ratio"], given["megapixels"]) == (4, "21:9", "0.25")


def test_nano_banana_sends_image_input_and_resolution_only_where_it_exists() -> None:
    image = InputImage(png(), "image/png")
    _, body, _ = create(NANO, input_images=(image,), aspect_ratio="16:9", resolution="1K")
    assert "resolution" not in body["input"]  # 2.5 Flash Image always makes ~1K
    assert len(body["input"]["image_input"]) == 1
    _, body, _ = create(NANO_PRO, size=Size(4096, 4096))
    assert (body["input"]["aspect_ratio"], body["input"]["resolution"]) == ("1:1", "4K")


def test_a_tier_a_capability_override_adds_is_refused_naming_resolution() -> None:
    dep = dataclasses.replace(
        deployment(FLUX2), capabilities=dataclasses.replace(FLUX2_CAPS, resolutions=("4K",))
    )
    request = ImageRequest(prompt="x", model=FLUX2, resolution="4K")
    with pytest.raises(UpstreamError) as caught:
        build_create(request, dep, family_for(FLUX2))
    assert (caught.value.kind, caught.value.param) == (FailureKind.BAD_REQUEST, "resolution")


def test_passthrough_fields_reach_the_input_and_win() -> None:
    passthrough = {"replicate": {"go_fast": False, "aspect_ratio": "9:21"}}
    _, body, _ = create(SCHNELL, aspect_ratio="1:1", passthrough=passthrough)
    assert body["input"]["go_fast"] is False
    assert body["input"]["aspect_ratio"] == "9:21"


def test_capabilities_refuse_what_a_model_cannot_honour() -> None:
    assert capabilities_for(NANO).seed is False
    assert capabilities_for(KONTEXT).max_input_images == 1
    assert capabilities_for(KONTEXT).output_formats == ("png", "jpeg")
    assert capabilities_for(SCHNELL).max_input_images == 0
    assert not any(capabilities_for(model).mask for model in MODELS)
    assert capabilities_for("someone/unknown-model").max_n == 1  # the generic family
    assert capabilities_for(f"{SCHNELL}:abc").max_n == 4


def test_the_shipped_catalog_declares_what_the_provider_maps() -> None:
    catalog = Catalog.shipped()
    for model in MODELS:
        entry = catalog.find("replicate", model)
        assert entry is not None, model
        assert entry.capabilities == capabilities_for(model), model


def test_a_family_option_names_the_family_of_an_unlisted_model() -> None:
    assert family_for("acme/my-flux-lora:abc", "flux-1").name == "flux-1"
    assert family_for("acme/my-flux-lora:abc").name == "generic"
    with pytest.raises(ConfigError, match=r"options\.family"):
        ReplicateProvider(deployment("acme/x", family="sdxl"), None)  # type: ignore[arg-type]


# --- Prefer: wait ------------------------------------------------------------------------------


def test_prefer_wait_ends_before_the_deadline_within_replicates_limit() -> None:
    assert prefer_wait(deadline=1000.0, now=0.0) == "wait=60"
    assert prefer_wait(deadline=1000.0, now=0.0, most=90) == "wait=60"
    assert prefer_wait(deadline=14.9, now=0.0) == "wait=12"  # 2 s kept to cancel a slow one
    assert prefer_wait(deadline=0.5, now=0.0) == "wait=1"
    assert prefer_wait(deadline=100.0, now=0.0, most=0) is None


# --- predictions ---------------------------------------------------------------------------------


def prediction(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "xyz", "status": status, "urls": {}, **fields}


def test_output_is_one_url_or_a_list_and_urls_default_to_the_base() -> None:
    one = parse_prediction(prediction("succeeded", output="https://x/a.webp"), BASE)
    assert one.outputs == ("https://x/a.webp",)
    assert one.get_url == f"{BASE}/predictions/xyz"
    assert one.cancel_url == f"{BASE}/predictions/xyz/cancel"
    many = parse_prediction(prediction("succeeded", output=["https://x/a", None, "data:x"]), BASE)
    assert many.outputs == ("https://x/a", "data:x")


def test_a_body_that_is_not_a_prediction_is_unavailable() -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_prediction({"detail": "?"}, BASE)
    assert caught.value.kind is FailureKind.UNAVAILABLE


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        (prediction("succeeded", output=None), FailureKind.EMPTY),
        (
            prediction(
                "failed",
                error="All generated images contained NSFW content. Try running it again with a different prompt.",
            ),
            FailureKind.SAFETY,
        ),
        (
            prediction(
                "failed",
                error="The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
            ),
            FailureKind.SAFETY,
        ),
        (prediction("failed", error="CUDA out of memory"), FailureKind.UNAVAILABLE),
        (prediction("failed", error=None), FailureKind.UNAVAILABLE),
        (prediction("canceled"), FailureKind.UNAVAILABLE),
    ],
)
def test_each_end_of_a_prediction_has_its_kind(doc: dict[str, Any], kind: FailureKind) -> None:
    with pytest.raises(UpstreamError) as caught:
        settled_outputs(parse_prediction(doc, BASE))
    assert caught.value.kind is kind


def test_a_running_prediction_has_no_outputs_yet() -> None:
    for status in ("starting", "processing"):
        assert settled_outputs(parse_prediction(prediction(status), BASE)) is None


def test_failed_texts_are_classified_by_their_wording() -> None:
    assert classify_failed("NSFW content detected", "p").kind is FailureKind.SAFETY
    assert classify_failed("Input validation error: image", "p").kind is FailureKind.BAD_REQUEST
    canceled = classify_failed("Prediction interrupted; please retry (code: PA)", "p")
    assert canceled.kind is FailureKind.UNAVAILABLE


def test_notes_book_the_prediction_and_its_run_time_and_a_shortfall_warns() -> None:
    doc = prediction("succeeded", output=["a"], metrics={"predict_time": 4.2})
    notes = result_notes(parse_prediction(doc, BASE))
    assert notes == ["replicate prediction xyz", "replicate predict_time 4.20s"]
    assert shortfall(asked=4, got=3)[0].startswith("asked for 4 images, the model returned 3")
    assert shortfall(asked=2, got=2) == []


# --- HTTP failures ---------------------------------------------------------------------------------


def problem(status: int, title: str, detail: str, **extra: Any) -> bytes:
    return orjson.dumps({"title": title, "detail": detail, "status": status, **extra})


def classify(status: int, body: bytes, headers: dict[str, str] | None = None) -> UpstreamError:
    return classify_failure(status, headers or {}, body, target=f"model `{FLUX2}`")


def test_problem_json_statuses_map_to_kinds() -> None:
    unauth = classify(
        401, problem(401, "Unauthenticated", "You did not pass a valid authentication token")
    )
    assert unauth.kind is FailureKind.AUTH
    credit = classify(
        402, problem(402, "Insufficient credit", "You have insufficient credit to run this model.")
    )
    assert credit.kind is FailureKind.BILLING
    missing = classify(404, problem(404, "Not found", "The requested model does not exist."))
    assert missing.kind is FailureKind.NOT_FOUND
    assert FLUX2 in missing.diagnosis
    version = classify(
        422,
        problem(
            422,
            "Invalid version or not permitted",
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
        ),
    )
    assert version.kind is FailureKind.NOT_FOUND
    broken = classify(500, problem(500, "Internal Server Error", "An unexpected error occurred."))
    assert broken.kind is FailureKind.UNAVAILABLE


def test_a_validation_failure_names_the_input_field() -> None:
    detail = '- input.aspect_ratio: aspect_ratio must be one of the following: "1:1"\n'
    fields = [{"type": "enum", "field": "input.aspect_ratio", "description": "..."}]
    error = classify(422, problem(422, "Input validation failed", detail, invalid_fields=fields))
    assert (error.kind, error.param) == (FailureKind.BAD_REQUEST, "aspect_ratio")
    assert "aspect_ratio" in error.diagnosis
    bare = classify(422, problem(422, "Input validation failed", "- input.seed: Invalid type"))
    assert bare.param == "seed"


@pytest.mark.parametrize(
    ("headers", "detail", "wait"),
    [
        ({"retry-after": "3"}, "Request was throttled.", 3.0),
        ({}, "Request was throttled. Expected available in 8 seconds.", 8.0),
        ({}, "Request was throttled.", None),
    ],
)
def test_throttling_carries_its_retry_hint(
    headers: dict[str, str], detail: str, wait: float | None
) -> None:
    error = classify(429, problem(429, "Request was throttled.", detail), headers)
    assert (error.kind, error.retry_after) == (FailureKind.RATE_LIMITED, wait)


def test_retry_after_as_an_http_date() -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    error = classify(429, problem(429, "Request was throttled.", "x"), {"retry-after": when})
    assert error.retry_after is not None and 25 <= error.retry_after <= 31


def test_proxy_pages_are_judged_by_status() -> None:
    html = b"<html><head><title>502 Bad Gateway</title></head></html>"
    assert classify(502, html).kind is FailureKind.UNAVAILABLE
    page = b"<!DOCTYPE html><html><head><title>x | 524: A timeout occurred</title>"
    assert classify(524, page).kind is FailureKind.TIMEOUT


# --- the loop against FakeReplicate --------------------------------------------------------------


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate(keys={KEY}) as server:
        yield server


def provider_for(
    fake: FakeReplicate, session: Any, model: str = FLUX2, **options: Any
) -> ReplicateProvider:
    options.setdefault("poll_seconds", 0.01)
    return ReplicateProvider(deployment(model, fake.base_url + "/v1", **options), session)


def request(model: str = FLUX2, seconds: float = 30.0, **fields: Any) -> ImageRequest:
    return ImageRequest(
        prompt="a lighthouse", model=model, deadline=time.monotonic() + seconds, **fields
    )


def creates(fake: FakeReplicate) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/predictions")]


def cancels(fake: FakeReplicate) -> list[Any]:
    return [r for r in fake.requests if r.path.endswith("/cancel")]


async def test_a_deadline_reached_while_processing_is_a_timeout_and_cancels(
    fake: FakeReplicate,
) -> None:
    fake.processing_polls = 10_000  # never finishes
    async with make_session() as session:
        provider = provider_for(fake, session)
        with pytest.raises(UpstreamError) as caught:
            await provider.generate(request(seconds=0.6), UpstreamKey("k", KEY))
    assert caught.value.kind is FailureKind.TIMEOUT
    assert "cancelled upstream" in caught.value.diagnosis
    assert len(cancels(fake)) == 1
    (job,) = fake.jobs.values()
    assert job.status == "canceled" and job.cancel_requested


async def test_a_finished_prediction_comes_back_from_the_create_call(fake: FakeReplicate) -> None:
    async with make_session() as session:
        result = await provider_for(fake, session).generate(
            request(aspect_ratio="16:9", output_format="png"), UpstreamKey("k", KEY)
        )
    (sent,) = creates(fake)
    assert sent.headers["prefer"].startswith("wait=")
    assert int(sent.headers["prefer"].removeprefix("wait=")) <= 60
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert [r.method for r in fake.requests].count("GET") == 1  # the file only: no poll
    image = result.images[0]
    assert (image.format, image.width, image.height) == ("png", 1360, 768)
    assert result.provider == "replicate" and result.model == FLUX2
    assert any(note.startswith("replicate predict_time") for note in result.notes)


async def test_without_prefer_the_prediction_is_polled_to_its_end(fake: FakeReplicate) -> None:
    fake.processing_polls = 2
    async with make_session() as session:
        result = await provider_for(fake, session, wait=0).generate(
            request(), UpstreamKey("k", KEY)
        )
    assert "prefer" not in creates(fake)[0].headers
    polls = [r for r in fake.requests if r.method == "GET" and "/predictions/" in r.path]
    assert len(polls) == 3  # processing, processing, succeeded
    assert result.images


async def test_a_run_longer_than_the_wait_is_picked_up_by_polling(fake: FakeReplicate) -> None:
    fake.hold(1.3)
    async with make_session() as session:
        result = await provider_for(fake, session, wait=1).generate(
            request(), UpstreamKey("k", KEY)
        )
    assert creates(fake)[0].headers["prefer"] == "wait=1"
    assert result.images and not cancels(fake)


async def test_what_a_model_cannot_honour_reaches_the_client_as_a_warning(
    fake: FakeReplicate,
) -> None:
    async with make_session() as session:
        result = await provider_for(fake, session, KONTEXT).generate(
            request(KONTEXT, output_format="jpeg", output_compression=40), UpstreamKey("k", KEY)
        )
    assert result.images[0].format == "jpeg"
    assert any("output_compression was not applied" in w for w in result.warnings)


async def test_n_images_from_one_flux1_call(fake: FakeReplicate) -> None:
    async with make_session() as session:
        result = await provider_for(fake, session, SCHNELL).generate(
            request(SCHNELL, n=3, output_format="jpeg"), UpstreamKey("k", KEY)
        )
    assert [image.format for image in result.images] == ["jpeg"] * 3
    assert creates(fake)[0].json["input"]["num_outputs"] == 3


async def test_a_version_and_a_deployment_reach_their_endpoints(fake: FakeReplicate) -> None:
    fake.deployments["acme/fast-flux"] = SCHNELL
    pinned = f"{SCHNELL}:{fake.version_of(SCHNELL)}"
    async with make_session() as session:
        await provider_for(fake, session, pinned).generate(request(pinned), UpstreamKey("k", KEY))
        hosted = provider_for(fake, session, SCHNELL, deployment="acme/fast-flux")
        await hosted.generate(request(SCHNELL), UpstreamKey("k", KEY))
    paths = [r.path for r in creates(fake)]
    assert paths == ["/v1/predictions", "/v1/deployments/acme/fast-flux/predictions"]


async def test_an_unknown_model_is_not_found_and_named(fake: FakeReplicate) -> None:
    async with make_session() as session:
        with pytest.raises(UpstreamError) as caught:
            await provider_for(fake, session, "acme/nothing").generate(
                request("acme/nothing"), UpstreamKey("k", KEY)
            )
    assert caught.value.kind is FailureKind.NOT_FOUND
    assert "acme/nothing" in caught.value.diagnosis


async def test_a_few_failed_polls_are_tolerated_then_the_run_is_given_up(
    fake: FakeReplicate,
) -> None:
    fake.script("slow_job")
    fake.poll_errors = 2
    async with make_session() as session:
        provider = provider_for(fake, session)
        assert (await provider.generate(request(), UpstreamKey("k", KEY))).images
        fake.script("slow_job")
        fake.poll_errors = 3
        with pytest.raises(UpstreamError) as caught:
            await provider.generate(request(), UpstreamKey("k", KEY))
    assert caught.value.kind is FailureKind.UNAVAILABLE
    assert len(cancels(fake)) == 1  # the abandoned prediction is stopped


async def test_a_caller_that_gives_up_cancels_the_prediction(fake: FakeReplicate) -> None:
    fake.processing_polls = 10_000
    async with make_session() as session:
        task = asyncio.create_task(
            provider_for(fake, session).generate(request(), UpstreamKey("k", KEY))
        )
        for _ in range(500):  # until the loop polls
            if any("/predictions/" in r.path for r in fake.requests):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(cancels(fake)) == 1
