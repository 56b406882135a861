"""FakeReplicate speaks Replicate's predictions API, scenario by scenario."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from PIL import Image

from tests.fakes import replicate_wire as wire
from tests.fakes.replicate import FakeReplicate

KEY = "r8_good_token"
AUTH = {"Authorization": f"Bearer {KEY}"}
FLUX2 = "black-forest-labs/flux-2-pro"
SCHNELL = "black-forest-labs/flux-schnell"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate(keys={KEY}) as server:
        yield server


async def create(
    http: aiohttp.ClientSession,
    fake: FakeReplicate,
    model: str = FLUX2,
    *,
    scenario: str | None = None,
    wait: str | None = "wait=5",
    headers: dict[str, str] | None = None,
    **given: Any,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    sent = {**AUTH, **(headers or {})}
    if wait is not None:
        sent["Prefer"] = wait
    if scenario:
        sent["x-fake-scenario"] = scenario
    body = {"input": {"prompt": "a red fox", **given}}
    url = f"{fake.base_url}/v1/models/{model}/predictions"
    async with http.post(url, json=body, headers=sent) as response:
        return response.status, orjson.loads(await response.read()), response


async def get(http: aiohttp.ClientSession, url: str, method: str = "GET") -> dict[str, Any]:
    async with http.request(method, url, headers=AUTH) as response:
        assert response.status == 200
        doc: dict[str, Any] = orjson.loads(await response.read())
        return doc


async def file_info(http: aiohttp.ClientSession, url: str) -> tuple[str, int, int, str]:
    async with http.get(url) as response:
        assert response.status == 200
        data = await response.read()
        with Image.open(io.BytesIO(data)) as image:
            return image.format or "", image.width, image.height, response.content_type


def data_uri(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


async def test_a_prediction_within_the_wait_comes_back_finished(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    status, doc, response = await create(http, fake, aspect_ratio="16:9")
    assert status == 201
    assert response.headers["Preference-Applied"] == "wait=5"
    assert response.content_type == "application/json"
    assert doc["status"] == "succeeded" and doc["error"] is None
    assert doc["model"] == FLUX2 and doc["input"]["prompt"] == "a red fox"
    assert set(doc["urls"]) == {"get", "cancel", "web"}
    assert doc["urls"]["get"] == f"{fake.base_url}/v1/predictions/{doc['id']}"
    assert doc["metrics"]["predict_time"] > 0 and doc["completed_at"].endswith("Z")
    assert isinstance(doc["output"], str)  # FLUX.2 answers one URL
    assert await file_info(http, doc["output"]) == ("WEBP", 1360, 768, "image/webp")


async def test_without_prefer_it_starts_then_ends_on_the_next_poll(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    status, doc, response = await create(http, fake, wait=None)
    assert (status, doc["status"], doc["output"]) == (201, "starting", None)
    assert "Preference-Applied" not in response.headers
    assert (await get(http, doc["urls"]["get"]))["status"] == "succeeded"


async def test_slow_job_and_processing_polls_go_through_processing(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    _, doc, _ = await create(http, fake, scenario="slow_job")
    seen = [doc["status"]]
    for _ in range(2):
        seen.append((await get(http, doc["urls"]["get"]))["status"])
    assert seen == ["starting", "processing", "succeeded"]
    fake.processing_polls = 2
    _, doc, _ = await create(http, fake)
    seen = [doc["status"]] + [(await get(http, doc["urls"]["get"]))["status"] for _ in range(3)]
    assert seen == ["starting", "processing", "processing", "succeeded"]


async def test_a_run_longer_than_the_wait_answers_processing(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    fake.hold(1.5)
    _, doc, _ = await create(http, fake, wait="wait=1")
    assert doc["status"] == "processing" and "started_at" in doc
    await asyncio.sleep(0.6)
    assert (await get(http, doc["urls"]["get"]))["status"] == "succeeded"


async def test_cancel_stops_a_running_prediction_only(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    fake.processing_polls = 5
    _, doc, _ = await create(http, fake)
    cancelled = await get(http, doc["urls"]["cancel"], method="POST")
    assert cancelled["status"] == "canceled" and cancelled["output"] is None
    assert fake.jobs[doc["id"]].cancel_requested
    fake.processing_polls = 0
    _, done, _ = await create(http, fake)
    assert (await get(http, done["urls"]["cancel"], method="POST"))["status"] == "succeeded"


async def test_flux1_answers_a_list_of_num_outputs_files(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    _, doc, _ = await create(
        http, fake, SCHNELL, num_outputs=3, output_format="jpg", megapixels="0.25"
    )
    assert isinstance(doc["output"], list) and len(doc["output"]) == 3
    assert await file_info(http, doc["output"][2]) == ("JPEG", 512, 512, "image/jpeg")


@pytest.mark.parametrize(
    ("model", "given", "size"),
    [
        (FLUX2, {"aspect_ratio": "custom", "width": 1536, "height": 1024}, (1536, 1024)),
        (FLUX2, {"aspect_ratio": "16:9", "resolution": "4 MP"}, (2048, 1152)),
        (FLUX2, {"resolution": "4 MP"}, (2048, 2048)),
        ("black-forest-labs/flux-kontext-pro", {"aspect_ratio": "21:9"}, (1568, 672)),
        ("google/nano-banana-pro", {"aspect_ratio": "16:9", "resolution": "2K"}, (2688, 1536)),
        ("google/nano-banana", {"aspect_ratio": "3:4"}, (864, 1184)),
    ],
)
def test_output_sizes_follow_each_family(
    model: str, given: dict[str, Any], size: tuple[int, int]
) -> None:
    parsed = wire.parse_input(wire.MODELS[model], {"prompt": "x", **given})
    assert wire.output_size(parsed) == size


def test_match_input_image_takes_the_first_image_aspect() -> None:
    schema = wire.MODELS["black-forest-labs/flux-kontext-pro"]
    parsed = wire.parse_input(schema, {"prompt": "x", "input_image": data_uri(300, 150)})
    width, height = wire.output_size(parsed)
    assert abs(width / height - 2.0) < 0.05


async def test_invalid_inputs_get_a_422_naming_each_field(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    status, doc, response = await create(
        http, fake, aspect_ratio="7:3", output_format="gif", input_images=["x"] * 9
    )
    assert status == 422 and response.content_type == "application/problem+json"
    assert doc["title"] == "Input validation failed"
    fields = {item["field"] for item in doc["invalid_fields"]}
    assert fields == {"input.aspect_ratio", "input.output_format", "input.input_images"}
    assert "- input.aspect_ratio: aspect_ratio must be one of the following" in doc["detail"]
    status, doc, _ = await create(http, fake, SCHNELL, num_outputs=5)
    assert status == 422 and doc["invalid_fields"][0]["field"] == "input.num_outputs"
    assert fake.requests[-1].scenario is None  # rejected before a scenario was chosen


async def test_kontext_refuses_a_high_tolerance_with_an_image(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    status, doc, _ = await create(
        http,
        fake,
        "black-forest-labs/flux-kontext-pro",
        input_image=data_uri(64, 64),
        safety_tolerance=5,
    )
    assert status == 422 and doc["invalid_fields"][0]["field"] == "input.safety_tolerance"


async def test_tokens_models_versions_and_deployments(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    status, doc, _ = await create(http, fake, headers={"Authorization": "Bearer nope"})
    assert (status, doc["detail"]) == (401, "You did not pass a valid authentication token")
    status, doc, _ = await create(http, fake, headers={"Authorization": ""})
    assert (status, doc["title"]) == (401, "Unauthenticated")
    status, doc, _ = await create(http, fake, "acme/nothing")
    assert status == 404
    body = {"version": fake.version_of(SCHNELL), "input": {"prompt": "x"}}
    async with http.post(f"{fake.base_url}/v1/predictions", json=body, headers=AUTH) as r:
        assert r.status == 201 and (await r.json())["model"] == SCHNELL
    body["version"] = "0" * 64
    async with http.post(f"{fake.base_url}/v1/predictions", json=body, headers=AUTH) as r:
        assert r.status == 422 and (await r.json())["title"].startswith("Invalid version")
    url = f"{fake.base_url}/v1/deployments/acme/fast/predictions"
    async with http.post(url, json={"input": {"prompt": "x"}}, headers=AUTH) as r:
        assert r.status == 404
    fake.deployments["acme/fast"] = SCHNELL
    async with http.post(url, json={"input": {"prompt": "x"}}, headers=AUTH) as r:
        assert r.status == 201 and (await r.json())["model"] == SCHNELL


@pytest.mark.parametrize(
    ("scenario", "status", "title"),
    [
        ("unauthorized", 401, "Unauthenticated"),
        ("insufficient_credit", 402, "Insufficient credit"),
        ("validation", 422, "Input validation failed"),
        ("server_error", 500, "Internal Server Error"),
    ],
)
async def test_problem_scenarios(
    http: aiohttp.ClientSession, fake: FakeReplicate, scenario: str, status: int, title: str
) -> None:
    got, doc, response = await create(http, fake, scenario=scenario)
    assert (got, doc["title"], doc["status"]) == (status, title, status)
    assert response.content_type == "application/problem+json"


async def test_rate_limited_carries_retry_after(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    fake.retry_after = 3
    status, doc, response = await create(http, fake, scenario="rate_limited")
    assert (status, response.headers["Retry-After"]) == (429, "3")
    assert doc["detail"] == "Request was throttled. Expected available in 3 seconds."


async def test_proxy_pages(http: aiohttp.ClientSession, fake: FakeReplicate) -> None:
    for scenario, status in (("bad_gateway", 502), ("cf_524", 524)):
        async with http.post(
            f"{fake.base_url}/v1/models/{FLUX2}/predictions",
            json={"input": {"prompt": "x"}},
            headers={**AUTH, "x-fake-scenario": scenario},
        ) as response:
            assert response.status == status
            assert response.content_type == "text/html"


@pytest.mark.parametrize(
    ("scenario", "status", "error"),
    [
        ("failed_nsfw", "failed", wire.NSFW_ERROR),
        ("failed_sensitive", "failed", wire.SENSITIVE_ERROR),
        ("failed_error", "failed", wire.MODEL_ERROR),
        ("canceled", "canceled", None),
    ],
)
async def test_predictions_that_end_badly(
    http: aiohttp.ClientSession,
    fake: FakeReplicate,
    scenario: str,
    status: str,
    error: str | None,
) -> None:
    code, doc, _ = await create(http, fake, scenario=scenario)
    assert (code, doc["status"], doc["error"], doc["output"]) == (201, status, error, None)


async def test_wrong_size_serves_a_square_whatever_was_asked(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    _, doc, _ = await create(http, fake, scenario="wrong_size", aspect_ratio="16:9")
    assert (await file_info(http, doc["output"]))[1:3] == (1024, 1024)


async def test_unknown_predictions_and_paths_are_404(
    http: aiohttp.ClientSession, fake: FakeReplicate
) -> None:
    async with http.get(f"{fake.base_url}/v1/predictions/nope", headers=AUTH) as response:
        assert response.status == 404
    async with http.get(f"{fake.base_url}/v1/elsewhere", headers=AUTH) as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_the_fake_runs_as_a_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.replicate",
        "--port",
        "0",
        "--keys",
        KEY,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.removeprefix("listening on ")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base_url}/v1/models/{FLUX2}/predictions",
                json={"input": {"prompt": "x"}},
                headers={**AUTH, "Prefer": "wait"},
            ) as response,
        ):
            assert response.status == 201
            assert (await response.json())["status"] == "succeeded"
    finally:
        process.terminate()
        await process.wait()
