"""FakeBfl speaks the BFL FLUX API wire format: auth, submit, poll states, result URLs, limits."""

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

from tests.fakes.bfl import FakeBfl

KEY = "bfl-test-key"
AUTH = {"x-key": KEY}


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeBfl]:
    async with FakeBfl(keys={KEY}) as server:
        yield server


async def submit(
    http: aiohttp.ClientSession,
    fake: FakeBfl,
    model: str = "flux-2-pro",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    body = {"prompt": "a red fox", **fields}
    sent = AUTH if headers is None else headers
    async with http.post(f"{fake.base_url}/v1/{model}", json=body, headers=sent) as response:
        return response.status, orjson.loads(await response.read()), response


async def poll(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url, headers=AUTH) as response:
        assert response.status == 200
        doc: dict[str, Any] = orjson.loads(await response.read())
        return doc


async def finish(http: aiohttp.ClientSession, url: str, polls: int = 10) -> dict[str, Any]:
    for _ in range(polls):
        doc = await poll(http, url)
        if doc["status"] != "Pending":
            return doc
    raise AssertionError("still Pending")


async def download(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as response:  # no x-key: the signed URL needs none
        return response.status, await response.read()


def png(width: int, height: int, mode: str = "RGB") -> str:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


async def test_submit_pending_ready_and_download(
    http: aiohttp.ClientSession, fake: FakeBfl
) -> None:
    status, doc, _ = await submit(http, fake, width=1536, height=1024, seed=7, output_format="png")
    assert status == 200
    assert set(doc) == {"id", "polling_url", "cost", "input_mp", "output_mp"}
    assert doc["polling_url"] == f"{fake.base_url}/v1/get_result?id={doc['id']}"
    assert doc["output_mp"] == 1.57
    first = await poll(http, doc["polling_url"])
    assert first["status"] == "Pending" and first["result"] is None
    assert set(first) == {"id", "status", "result", "progress", "details", "preview"}
    ready = await poll(http, doc["polling_url"])
    assert ready["status"] == "Ready" and ready["result"]["seed"] == 7
    code, data = await download(http, ready["result"]["sample"])
    assert code == 200
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size) == ("PNG", (1536, 1024))
    assert fake.counts["ok"] == 1  # one scenario per task, not per poll


@pytest.mark.parametrize(
    ("model", "fields", "size", "fmt"),
    [
        ("flux-kontext-pro", {"aspect_ratio": "16:9"}, (1360, 768), "PNG"),
        ("flux-kontext-pro", {}, (1024, 1024), "PNG"),
        ("flux-pro-1.1", {}, (1024, 768), "JPEG"),
        ("flux-pro-1.1-ultra", {"aspect_ratio": "1:1", "raw": True}, (2048, 2048), "JPEG"),
        ("flux-2-pro", {}, (1024, 1024), "JPEG"),
    ],
)
async def test_each_family_makes_its_geometry_and_default_format(
    http: aiohttp.ClientSession,
    fake: FakeBfl,
    model: str,
    fields: dict[str, Any],
    size: tuple[int, int],
    fmt: str,
) -> None:
    status, doc, _ = await submit(http, fake, model, **fields)
    assert status == 200, doc
    ready = await finish(http, doc["polling_url"])
    _, data = await download(http, ready["result"]["sample"])
    with Image.open(io.BytesIO(data)) as image:
        assert (image.size, image.format) == (size, fmt)
    if model.startswith("flux-pro"):
        assert "cost" not in doc  # FLUX.1 endpoints report no cost


async def test_keys_are_checked_on_submit_and_poll(
    http: aiohttp.ClientSession, fake: FakeBfl
) -> None:
    status, doc, _ = await submit(http, fake, headers={})
    assert (status, doc) == (403, {"detail": "Not authenticated"})
    status, doc, _ = await submit(http, fake, headers={"x-key": "wrong"})
    assert (status, doc) == (401, {"detail": "Invalid API key"})
    _, doc, _ = await submit(http, fake)
    async with http.get(doc["polling_url"]) as response:
        assert response.status == 403


async def test_validation_answers_fastapi_422_bodies(
    http: aiohttp.ClientSession, fake: FakeBfl
) -> None:
    status, doc, _ = await submit(http, fake, "flux-pro-1.1", width=1000, height=2000, size="x")
    assert status == 422
    by_field = {entry["loc"][1]: entry for entry in doc["detail"]}
    assert by_field["width"]["type"] == "multiple_of"
    assert by_field["height"]["type"] == "less_than_equal"
    assert by_field["size"]["type"] == "extra_forbidden"
    status, doc, _ = await submit(http, fake, "flux-2-pro", width=2048, height=2064)
    assert status == 422 and "4194304" in doc["detail"][0]["msg"]
    status, doc, _ = await submit(http, fake, "flux-kontext-pro", aspect_ratio="3:1")
    assert status == 422 and doc["detail"][0]["loc"] == ["body", "aspect_ratio"]
    status, doc, _ = await submit(http, fake, "flux-2-pro", safety_tolerance=6)
    assert status == 422 and doc["detail"][0]["type"] == "less_than_equal"
    image = png(16, 16)
    status, doc, _ = await submit(
        http, fake, "flux-kontext-pro", input_image=image, safety_tolerance=3
    )
    assert status == 422, "Kontext with an input image allows safety_tolerance up to 2"
    assert not fake.counts, "a rejected submit plays no scenario"


async def test_fill_checks_the_mask_size_and_keeps_the_image_size(
    http: aiohttp.ClientSession, fake: FakeBfl
) -> None:
    status, doc, _ = await submit(
        http, fake, "flux-pro-1.0-fill", image=png(64, 32), mask=png(32, 32)
    )
    assert status == 422 and "does not match" in doc["detail"][0]["msg"]
    status, doc, _ = await submit(http, fake, "flux-pro-1.0-fill", mask=png(32, 32))
    assert status == 422 and doc["detail"][0]["loc"] == ["body", "image"]
    status, doc, _ = await submit(
        http, fake, "flux-pro-1.0-fill", image=png(64, 32), mask=png(64, 32), steps=20
    )
    ready = await finish(http, doc["polling_url"])
    _, data = await download(http, ready["result"]["sample"])
    with Image.open(io.BytesIO(data)) as result:
        assert result.size == (64, 32)


@pytest.mark.parametrize(
    ("scenario", "status", "details"),
    [
        ("request_moderated", "Request Moderated", True),
        ("content_moderated", "Content Moderated", True),
        ("error", "Error", False),
        ("task_not_found", "Task not found", False),
    ],
)
async def test_terminal_states(
    http: aiohttp.ClientSession, fake: FakeBfl, scenario: str, status: str, details: bool
) -> None:
    fake.script(scenario)
    _, doc, _ = await submit(http, fake)
    ended = await finish(http, doc["polling_url"])
    assert ended["status"] == status and ended["result"] is None
    assert (ended["details"] is not None) is details


async def test_an_unknown_task_is_not_found(http: aiohttp.ClientSession, fake: FakeBfl) -> None:
    doc = await poll(http, f"{fake.base_url}/v1/get_result?id=no-such-task")
    assert doc["status"] == "Task not found" and doc["id"] == "no-such-task"


async def test_result_urls_expire(http: aiohttp.ClientSession, fake: FakeBfl) -> None:
    fake.result_ttl = 0.05
    _, doc, _ = await submit(http, fake)
    ready = await finish(http, doc["polling_url"])
    await asyncio.sleep(0.1)
    code, body = await download(http, ready["result"]["sample"])
    assert code == 403 and b"AuthenticationFailed" in body


async def test_more_than_max_active_tasks_get_429(
    http: aiohttp.ClientSession, fake: FakeBfl
) -> None:
    fake.max_active = 2
    urls = [(await submit(http, fake))[1]["polling_url"] for _ in range(2)]
    status, doc, response = await submit(http, fake)
    assert status == 429 and doc["error"] == "rate_limit_exceeded" and doc["retry_after"] == 5
    assert response.headers["Retry-After"] == "5"
    await finish(http, urls[0])  # one task ends: room for one more
    assert (await submit(http, fake))[0] == 200


async def test_kontext_max_has_its_own_limit_of_six(
    http: aiohttp.ClientSession, fake: FakeBfl
) -> None:
    statuses = [(await submit(http, fake, "flux-kontext-max"))[0] for _ in range(7)]
    assert statuses == [200] * 6 + [429]
    assert (await submit(http, fake, "flux-2-pro"))[0] == 200


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ("out_of_credits", 402),
        ("rate_limited", 429),
        ("unauthorized", 401),
        ("forbidden", 403),
        ("server_error", 500),
        ("unavailable", 503),
        ("bad_gateway", 502),
        ("cf_524", 524),
    ],
)
async def test_submit_failures(
    http: aiohttp.ClientSession, fake: FakeBfl, scenario: str, status: int
) -> None:
    async with http.post(
        f"{fake.base_url}/v1/flux-2-pro",
        json={"prompt": "x"},
        headers={**AUTH, "x-fake-scenario": scenario},
    ) as response:
        assert response.status == status
        assert (response.content_type == "text/html") == (scenario in ("bad_gateway", "cf_524"))


async def test_wrong_size_serves_a_square_whatever_was_asked(
    http: aiohttp.ClientSession, fake: FakeBfl
) -> None:
    fake.script("wrong_size")
    _, doc, _ = await submit(http, fake, width=1536, height=1024)
    ready = await finish(http, doc["polling_url"])
    _, data = await download(http, ready["result"]["sample"])
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (1024, 1024)


async def test_an_unknown_endpoint_is_fastapi_404(
    http: aiohttp.ClientSession, fake: FakeBfl
) -> None:
    status, doc, _ = await submit(http, fake, "flux-9-mega")
    assert (status, doc) == (404, {"detail": "Not Found"})


async def test_runs_as_its_own_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.bfl", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.startswith(b"listening on http://127.0.0.1:")
    finally:
        process.terminate()
        await process.wait()
