"""FakeFal speaks fal's queue API: submit, status states, result, cancel, files, failures."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest_asyncio
from PIL import Image

from tests.fakes.fal import FakeFal

KEY = "fal-key-id:fal-key-secret"
AUTH = {"Authorization": f"Key {KEY}"}


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeFal]:
    async with FakeFal(keys={KEY}) as server:
        yield server


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    sent = AUTH if headers is None else headers
    async with http.request(method, url, json=body, headers=sent) as response:
        raw = await response.read()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = raw
        return response.status, doc, response


async def submit(
    http: aiohttp.ClientSession, fake: FakeFal, app: str = "fal-ai/flux-2-pro", **fields: Any
) -> dict[str, Any]:
    status, doc, _ = await call(
        http, "POST", f"{fake.base_url}/{app}", {"prompt": "a fox", **fields}
    )
    assert status == 200, doc
    return dict(doc)


async def run_to_completion(http: aiohttp.ClientSession, job: dict[str, Any]) -> list[str]:
    states = []
    for _ in range(10):
        _, doc, _ = await call(http, "GET", job["status_url"])
        states.append(doc["status"])
        if doc["status"] == "COMPLETED":
            break
    return states


def png(width: int, height: int, color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def download(http: aiohttp.ClientSession, url: str) -> tuple[str, Image.Image]:
    """(Pillow's format name, the pixels) of a result file."""
    async with http.get(url) as response:
        assert response.status == 200
        with Image.open(io.BytesIO(await response.read())) as image:
            image.load()
            return image.format or "", image.copy()


async def test_a_job_moves_through_the_queue_states_then_answers_its_images(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    fake.queue_polls, fake.progress_polls = 2, 1
    job = await submit(http, fake, image_size={"width": 1536, "height": 1024}, output_format="png")
    assert job["status"] == "IN_QUEUE" and job["queue_position"] == 1
    _, first, _ = await call(http, "GET", job["status_url"])
    assert (first["status"], first["queue_position"]) == ("IN_QUEUE", 1)
    _, second, _ = await call(http, "GET", job["status_url"])
    assert (second["status"], second["queue_position"]) == ("IN_QUEUE", 0)
    _, third, _ = await call(http, "GET", job["status_url"] + "?logs=1")
    assert third["status"] == "IN_PROGRESS" and third["logs"]
    _, done, _ = await call(http, "GET", job["status_url"])
    assert done["status"] == "COMPLETED"
    assert done["error"] is None and "inference_time" in done["metrics"]
    status, result, response = await call(http, "GET", job["response_url"])
    assert status == 200 and response.headers["x-fal-request-id"]
    [image] = result["images"]
    assert (image["width"], image["height"], image["content_type"]) == (1536, 1024, "image/png")
    assert result["has_nsfw_concepts"] == [False]
    fmt, picture = await download(http, image["url"])
    assert (fmt, picture.size) == ("PNG", (1536, 1024))


async def test_queue_urls_drop_the_subpath(http: aiohttp.ClientSession, fake: FakeFal) -> None:
    job = await submit(http, fake, "fal-ai/flux-2-pro/edit", image_urls=[data_uri(png(64, 48))])
    root = f"{fake.base_url}/fal-ai/flux-2-pro/requests/{job['request_id']}"
    assert job["response_url"] == root
    assert job["status_url"] == root + "/status" and job["cancel_url"] == root + "/cancel"
    await run_to_completion(http, job)
    _, result, _ = await call(http, "GET", job["response_url"])
    assert (result["images"][0]["width"], result["images"][0]["height"]) == (64, 48)


async def test_key_auth_is_required_on_every_queue_call(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    url = f"{fake.base_url}/fal-ai/flux-2-pro"
    status, doc, _ = await call(http, "POST", url, {"prompt": "x"}, headers={})
    assert status == 401 and isinstance(doc["detail"], str)
    wrong = {"Authorization": "Key nope"}
    assert (await call(http, "POST", url, {"prompt": "x"}, headers=wrong))[0] == 401
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert (await call(http, "POST", url, {"prompt": "x"}, headers=bearer))[0] == 401
    job = await submit(http, fake)
    assert (await call(http, "GET", job["status_url"], headers=wrong))[0] == 401


async def test_cancel_is_accepted_while_queued_and_refused_once_completed(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    job = await submit(http, fake)
    status, doc, _ = await call(http, "PUT", job["cancel_url"])
    assert (status, doc) == (202, {"status": "CANCELLATION_REQUESTED"})
    _, state, _ = await call(http, "GET", job["status_url"])
    assert state["status"] == "COMPLETED" and state["error_type"] == "client_cancelled"
    done = await submit(http, fake)
    await run_to_completion(http, done)
    status, doc, _ = await call(http, "PUT", done["cancel_url"])
    assert (status, doc) == (400, {"status": "ALREADY_COMPLETED"})


async def test_a_stuck_job_never_leaves_the_queue(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    fake.script("stuck")
    job = await submit(http, fake)
    assert set(await run_to_completion(http, job)) == {"IN_QUEUE"}
    status, _, _ = await call(http, "GET", job["response_url"])
    assert status == 400


async def test_invalid_input_completes_with_an_error_and_a_fastapi_422(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    job = await submit(http, fake, output_format="webp")
    await run_to_completion(http, job)
    status, doc, _ = await call(http, "GET", job["response_url"])
    assert status == 422
    [item] = doc["detail"]
    assert item["loc"] == ["body", "output_format"] and item["type"] == "enum"
    assert {"msg", "url"} <= set(item)


async def test_failure_scenarios_answer_in_fals_formats(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    url = f"{fake.base_url}/fal-ai/flux/dev"
    expected = {
        "unauthorized": 401,
        "payment_required": 403,
        "rate_limited": 429,
        "server_error": 500,
        "gateway_timeout": 504,
        "bad_gateway": 502,
        "cf_524": 524,
    }
    for scenario, code in expected.items():
        fake.script(scenario)
        status, doc, response = await call(http, "POST", url, {"prompt": "x"})
        assert status == code, scenario
        if code in (502, 524):
            assert response.content_type == "text/html"
            assert "x-fal-request-id" not in response.headers
        else:
            assert "detail" in doc
    fake.script("gateway_timeout")
    _, doc, response = await call(http, "POST", url, {"prompt": "x"})
    assert doc["error_type"] == response.headers["x-fal-error-type"] == "request_timeout"
    fake.script("payment_required")
    _, doc, _ = await call(http, "POST", url, {"prompt": "x"})
    assert doc["detail"].startswith("User is locked. Reason: Exhausted balance.")


async def test_completion_failures_carry_error_and_error_type(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    for scenario, error_type, code in (
        ("content_policy", "content_policy_violation", 422),
        ("completed_error", "runner_server_error", 500),
    ):
        fake.script(scenario)
        job = await submit(http, fake)
        await run_to_completion(http, job)
        _, state, _ = await call(http, "GET", job["status_url"])
        assert state["status"] == "COMPLETED" and state["error_type"] == error_type
        status, _, _ = await call(http, "GET", job["response_url"])
        assert status == code


async def test_nsfw_answers_a_black_image_and_flags_it(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    fake.script("nsfw")
    job = await submit(http, fake, image_size="square_hd")
    await run_to_completion(http, job)
    _, result, _ = await call(http, "GET", job["response_url"])
    assert result["has_nsfw_concepts"] == [True]
    _, picture = await download(http, result["images"][0]["url"])
    assert picture.size == (1024, 1024) and picture.convert("L").getextrema() == (0, 0)


async def test_geometry_per_app_family(http: aiohttp.ClientSession, fake: FakeFal) -> None:
    cases: list[tuple[str, dict[str, Any], tuple[int, int]]] = [
        ("fal-ai/flux-2-pro", {"image_size": "portrait_16_9"}, (576, 1024)),
        ("fal-ai/flux-2-pro", {}, (1024, 768)),  # landscape_4_3 by default
        ("fal-ai/nano-banana-pro", {"aspect_ratio": "16:9", "resolution": "2K"}, (2688, 1536)),
        ("fal-ai/nano-banana", {"aspect_ratio": "3:2"}, (1248, 832)),
        ("fal-ai/gpt-image-1.5", {"image_size": "1024x1536"}, (1024, 1536)),
    ]
    for app, fields, size in cases:
        job = await submit(http, fake, app, **fields)
        await run_to_completion(http, job)
        _, result, _ = await call(http, "GET", job["response_url"])
        image = result["images"][0]
        assert (image["width"], image["height"]) == size, (app, fields)


async def test_num_images_sync_mode_and_transparency(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    job = await submit(
        http, fake, "fal-ai/gpt-image-1.5", num_images=3, background="transparent", sync_mode=True
    )
    await run_to_completion(http, job)
    _, result, _ = await call(http, "GET", job["response_url"])
    assert len(result["images"]) == 3
    head, _, payload = result["images"][0]["url"].partition(",")
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
        assert image.mode == "RGBA" and image.getchannel("A").getextrema()[0] == 0
    assert "has_nsfw_concepts" not in result  # GPT image answers carry no safety flags
    over = await submit(http, fake, "fal-ai/gpt-image-1.5", num_images=5)
    await run_to_completion(http, over)
    assert (await call(http, "GET", over["response_url"]))[0] == 422


async def test_inpainting_needs_a_mask_of_the_input_size(
    http: aiohttp.ClientSession, fake: FakeFal
) -> None:
    app = "fal-ai/flux-lora/inpainting"
    good = await submit(
        http, fake, app, image_url=data_uri(png(96, 64)), mask_url=data_uri(png(96, 64))
    )
    await run_to_completion(http, good)
    _, result, _ = await call(http, "GET", good["response_url"])
    assert (result["images"][0]["width"], result["images"][0]["height"]) == (96, 64)
    bad = await submit(
        http, fake, app, image_url=data_uri(png(96, 64)), mask_url=data_uri(png(8, 8))
    )
    await run_to_completion(http, bad)
    status, doc, _ = await call(http, "GET", bad["response_url"])
    assert status == 422 and doc["detail"][0]["loc"] == ["body", "mask_url"]


async def test_an_unknown_app_is_not_found(http: aiohttp.ClientSession, fake: FakeFal) -> None:
    status, doc, _ = await call(http, "POST", f"{fake.base_url}/fal-ai/no-such-model", {"p": 1})
    assert status == 404 and "detail" in doc


async def test_lost_files_answer_404(http: aiohttp.ClientSession, fake: FakeFal) -> None:
    fake.script("lost_file")
    job = await submit(http, fake)
    await run_to_completion(http, job)
    _, result, _ = await call(http, "GET", job["response_url"])
    async with http.get(result["images"][0]["url"]) as response:
        assert response.status == 404


async def test_runs_as_a_process(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.fal", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        base_url = line.removeprefix("listening on ").strip()
        status, doc, _ = await call(
            http,
            "POST",
            f"{base_url}/fal-ai/flux/schnell",
            {"prompt": "x"},
            {"Authorization": "Key k"},
        )
        assert status == 200 and doc["request_id"]
    finally:
        process.terminate()
        await process.wait()
