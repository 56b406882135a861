"""FakeGemini speaks the Gemini Developer API's image wire format, scenario by scenario."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from tests.fakes.conftest import image_info
from tests.fakes.gemini import FakeGemini
from tests.fakes.gemini_wire import pixel_size
from tests.fakes.images import encoded_image

KEY = "good-key"
FLASH = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image"
FLASH_31 = "gemini-3.1-flash-image"
PROMPT = {"contents": [{"role": "user", "parts": [{"text": "a cat in a spacesuit"}]}]}
# Verbatim from reference §7 (seen in several independent captures).
API_KEY_INVALID = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key.",
            },
        ],
    }
}


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(keys={KEY}) as server:
        yield server


def url(fake: FakeGemini, model: str, method: str = "generateContent", v: str = "v1beta") -> str:
    return f"{fake.base_url}/{v}/models/{model}:{method}"


async def generate(
    http: aiohttp.ClientSession,
    fake: FakeGemini,
    body: dict[str, Any] | None = None,
    *,
    model: str = FLASH,
    scenario: str | None = None,
    key: str = KEY,
) -> tuple[int, dict[str, Any]]:
    headers = {"x-goog-api-key": key}
    if scenario:
        headers["x-fake-scenario"] = scenario
    async with http.post(url(fake, model), json=body or PROMPT, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


def with_config(**config: Any) -> dict[str, Any]:
    return {**PROMPT, "generationConfig": config}


def detail_types(body: dict[str, Any]) -> list[str]:
    return [d["@type"].rsplit(".", 1)[1] for d in body["error"].get("details", [])]


# --- success ------------------------------------------------------------------------------------


async def test_generate_answers_reference_shape(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    """Text part first, then the PNG with a thoughtSignature; STOP; usage; ids."""
    status, body = await generate(http, fake)
    assert status == 200
    candidate = body["candidates"][0]
    text, image = candidate["content"]["parts"]
    assert text == {"text": "Here is your image."}
    assert image["inlineData"]["mimeType"] == "image/png"
    assert image_info(image["inlineData"]["data"]) == ("PNG", 1024, 1024)
    assert base64.b64decode(image["thoughtSignature"], validate=True)
    assert (candidate["finishReason"], candidate["index"]) == ("STOP", 0)
    usage = body["usageMetadata"]
    assert usage["candidatesTokensDetails"][-1] == {"modality": "IMAGE", "tokenCount": 1290}
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert usage["promptTokensDetails"][0]["modality"] == "TEXT"
    assert body["modelVersion"] == FLASH
    assert len(body["responseId"]) == 22
    assert fake.counts["ok"] == 1


async def test_v1_and_query_key_work(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    """google-genai 3.x calls /v1; older clients pass ?key=."""
    async with http.post(url(fake, FLASH, v="v1") + f"?key={KEY}", json=PROMPT) as response:
        assert response.status == 200
    assert fake.requests[0].path.startswith("/v1/models/")


async def test_snake_case_and_url_safe_base64_are_accepted(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    """What google-genai 3.4 really sends: snake_case inner keys and URL-safe base64."""
    picture = base64.urlsafe_b64encode(encoded_image(64, 48)).decode().rstrip("=")
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "make it snow"},
                    {"inline_data": {"mime_type": "image/png", "data": picture}},
                ],
            }
        ],
        "generation_config": {
            "response_modalities": ["TEXT", "IMAGE"],
            "image_config": {"aspect_ratio": "16:9", "image_size": "512"},
        },
    }
    status, answer = await generate(http, fake, body, model=FLASH_31)
    assert status == 200, answer
    image = answer["candidates"][0]["content"]["parts"][1]["inlineData"]["data"]
    assert image_info(image) == ("PNG", 672, 384)
    prompt_details = answer["usageMetadata"]["promptTokensDetails"]
    assert {"modality": "IMAGE", "tokenCount": 258} in prompt_details


async def test_flash_25_ignores_image_size(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    body = with_config(imageConfig={"aspectRatio": "3:2", "imageSize": "2K"})
    status, answer = await generate(http, fake, body, model=FLASH)
    assert status == 200
    image = answer["candidates"][0]["content"]["parts"][1]["inlineData"]["data"]
    assert image_info(image) == ("PNG", 1248, 832)


def test_pixel_sizes_follow_the_1k_table_and_tiers() -> None:
    assert pixel_size("16:9", "1K") == (1344, 768)
    assert pixel_size("16:9", "2K") == (2688, 1536)
    assert pixel_size("1:1", "4K") == (4096, 4096)
    assert pixel_size("21:9", "512") == (768, 336)
    assert pixel_size("8:1", "1K") == (3072, 384)


async def test_modalities_shape_the_parts(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    """["TEXT"] gives a 200 with text only; ["IMAGE"] gives the image alone."""
    status, text_only = await generate(http, fake, with_config(responseModalities=["TEXT"]))
    assert status == 200
    (part,) = text_only["candidates"][0]["content"]["parts"]
    assert "text" in part
    assert text_only["candidates"][0]["finishReason"] == "STOP"
    status, image_only = await generate(http, fake, with_config(responseModalities=["image"]))
    (part,) = image_only["candidates"][0]["content"]["parts"]
    assert part["inlineData"]["mimeType"] == "image/png"


async def test_pro_reports_thinking_tokens(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    _, body = await generate(http, fake, model=PRO)
    usage = body["usageMetadata"]
    assert usage["candidatesTokensDetails"][-1]["tokenCount"] == 1120
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )


async def test_compact_json_keeps_image_inline(http: aiohttp.ClientSession) -> None:
    """pretty_json=False writes "data":"<b64>" with no whitespace (default is indented)."""
    headers = {"x-goog-api-key": "x"}
    async with (
        FakeGemini(pretty_json=False) as fake,
        http.post(url(fake, FLASH), json=PROMPT, headers=headers) as response,
    ):
        raw = await response.read()
    assert raw.startswith(b'{"candidates":[{"content":{"parts":[{"text":')
    assert b'"data":"iVBORw0KGgo' in raw


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (PRO, with_config(imageConfig={"imageSize": "1k"}), "generation_config.image_config.image_size"),
        (PRO, with_config(imageConfig={"imageSize": "512"}), "generation_config.image_config.image_size"),
        (PRO, with_config(imageConfig={"aspectRatio": "1:4"}), "generation_config.image_config.aspect_ratio"),
        (FLASH, with_config(imageConfig={"aspectRatio": "7:3"}), "generation_config.image_config.aspect_ratio"),
        (FLASH, with_config(candidateCount=2), "generation_config.candidate_count"),
        (FLASH, {"contents": []}, "contents"),
        (FLASH, {**PROMPT, "n": 2}, None),
        (FLASH, with_config(imageConfig={"outputMimeType": "image/jpeg"}), "generation_config.image_config"),
        (FLASH, with_config(responseModalities=["PICTURE"]), "generation_config.response_modalities[0]"),
    ],
)  # fmt: skip
async def test_invalid_requests_get_bad_request_details(
    http: aiohttp.ClientSession,
    fake: FakeGemini,
    model: str,
    body: dict[str, Any],
    field: str | None,
) -> None:
    status, answer = await generate(http, fake, body, model=model)
    assert status == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    (detail,) = answer["error"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"][0].get("field") == field
    assert fake.requests[-1].scenario is None  # rejected before any scenario was chosen


async def test_extended_ratios_only_on_31_flash(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    body = with_config(imageConfig={"aspectRatio": "4:1", "imageSize": "512"})
    status, answer = await generate(http, fake, body, model=FLASH_31)
    assert status == 200
    image = answer["candidates"][0]["content"]["parts"][1]["inlineData"]["data"]
    assert image_info(image)[1:] == (1024, 256)


async def test_non_image_inline_data_is_rejected(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    junk = base64.b64encode(b"definitely not a picture").decode()
    part = {"inlineData": {"mimeType": "image/png", "data": junk}}
    body = {"contents": [{"parts": [{"text": "edit"}, part]}]}
    status, answer = await generate(http, fake, body)
    assert status == 400
    assert answer["error"]["message"].startswith("Unable to process input image")


async def test_bad_key_gets_verbatim_api_key_invalid(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    status, body = await generate(http, fake, key="wrong")
    assert (status, body) == (400, API_KEY_INVALID)


async def test_missing_key_is_permission_denied(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    async with http.post(url(fake, FLASH), json=PROMPT) as response:
        body = await response.json()
    assert (response.status, body["error"]["status"]) == (403, "PERMISSION_DENIED")


async def test_unknown_model_is_not_found(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    status, body = await generate(http, fake, model="gemini-9-ultra-image")
    assert status == 404
    assert body["error"]["message"].startswith(
        "models/gemini-9-ultra-image is not found for API version v1beta, or is not supported "
        "for generateContent. Call ListModels"
    )


async def test_models_list_pages_and_get(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    headers = {"x-goog-api-key": KEY}
    async with http.get(f"{fake.base_url}/v1beta/models?pageSize=3", headers=headers) as r:
        first = await r.json()
    token = first["nextPageToken"]
    async with http.get(f"{fake.base_url}/v1beta/models?pageToken={token}", headers=headers) as r:
        second = await r.json()
    names = [m["name"] for m in first["models"] + second["models"]]
    assert "models/gemini-3.1-flash-image" in names
    assert len(names) == 5
    assert "nextPageToken" not in second
    async with http.get(f"{fake.base_url}/v1/models/{PRO}", headers=headers) as r:
        assert (await r.json())["supportedGenerationMethods"][0] == "generateContent"


# --- streaming ------------------------------------------------------------------------------------


async def test_sse_stream_has_image_whole_and_usage_last(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    target = url(fake, FLASH, "streamGenerateContent") + "?alt=sse"
    async with http.post(target, json=PROMPT, headers={"x-goog-api-key": KEY}) as response:
        assert response.content_type == "text/event-stream"
        raw = await response.read()
    events = [orjson.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\r\n\r\n") if e]
    assert len(events) == 2
    assert events[0]["candidates"][0]["content"]["parts"] == [{"text": "Here is your image."}]
    last = events[-1]["candidates"][0]
    assert last["finishReason"] == "STOP"
    assert image_info(last["content"]["parts"][0]["inlineData"]["data"])[0] == "PNG"
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] >= 1290


async def test_stream_without_alt_is_a_json_array(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    target = url(fake, FLASH, "streamGenerateContent")
    async with http.post(target, json=PROMPT, headers={"x-goog-api-key": KEY}) as response:
        chunks = orjson.loads(await response.read())
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, "STOP"]
    headers = {"x-goog-api-key": KEY, "x-fake-scenario": "unavailable"}
    async with http.post(target, json=PROMPT, headers=headers) as response:
        assert response.status == 503
        assert (await response.json())[0]["error"]["status"] == "UNAVAILABLE"


# --- failure scenarios ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "status", "rpc_status", "details"),
    [
        ("rate_limited", 429, "RESOURCE_EXHAUSTED", ["QuotaFailure", "Help", "RetryInfo"]),
        ("quota_zero", 429, "RESOURCE_EXHAUSTED", ["QuotaFailure", "Help", "RetryInfo"]),
        ("quota_stuck", 429, "RESOURCE_EXHAUSTED", ["QuotaFailure", "Help", "RetryInfo"]),
        ("capacity_429", 429, "RESOURCE_EXHAUSTED", []),
        ("capacity", 503, "UNAVAILABLE", []),
        ("high_demand", 503, "UNAVAILABLE", []),
        ("unavailable", 503, "UNAVAILABLE", []),
        ("internal", 500, "INTERNAL", []),
        ("deadline", 504, "DEADLINE_EXCEEDED", []),
        ("billing", 400, "FAILED_PRECONDITION", []),
        ("permission_denied", 403, "PERMISSION_DENIED", ["ErrorInfo", "LocalizedMessage"]),
        ("bad_key", 400, "INVALID_ARGUMENT", ["ErrorInfo", "LocalizedMessage"]),
        ("prepaid_exhausted", 402, "RESOURCE_EXHAUSTED", []),
    ],
)
async def test_error_scenarios_send_rpc_status(
    http: aiohttp.ClientSession,
    fake: FakeGemini,
    scenario: str,
    status: int,
    rpc_status: str,
    details: list[str],
) -> None:
    got, body = await generate(http, fake, scenario=scenario)
    assert (got, body["error"]["code"], body["error"]["status"]) == (status, status, rpc_status)
    assert detail_types(body) == details
    assert fake.counts[scenario] == 1


async def test_quota_scenarios_differ_by_limit(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    fake.retry_delay = 7.5
    _, limited = await generate(http, fake, scenario="rate_limited")
    _, zero = await generate(http, fake, scenario="quota_zero")
    limited_violation = limited["error"]["details"][0]["violations"][0]
    assert limited_violation["quotaValue"] == "10"
    assert limited["error"]["details"][2]["retryDelay"] == "7.5s"
    assert limited["error"]["message"].endswith("Please retry in 7.5s.")
    zero_violations = zero["error"]["details"][0]["violations"]
    assert {v["quotaValue"] for v in zero_violations} == {"0"}
    assert all(v["quotaId"].endswith("-FreeTier") for v in zero_violations)
    assert f"limit: 0, model: {FLASH}" in zero["error"]["message"]
    assert zero_violations[0]["quotaDimensions"]["model"] == FLASH


@pytest.mark.parametrize(
    ("scenario", "status", "marker"),
    [
        ("bad_gateway", 502, b"<center><h1>502 Bad Gateway</h1></center>"),
        ("cf_524", 524, b"Error code 524"),
        ("get_channel_failed", 500, b'"code":"get_channel_failed"'),
    ],
)
async def test_proxy_scenarios_send_foreign_bodies(
    http: aiohttp.ClientSession, fake: FakeGemini, scenario: str, status: int, marker: bytes
) -> None:
    headers = {"x-goog-api-key": KEY, "x-fake-scenario": scenario}
    async with http.post(url(fake, FLASH), json=PROMPT, headers=headers) as response:
        assert response.status == status
        assert marker in await response.read()


@pytest.mark.parametrize(
    ("scenario", "finish"),
    [("image_safety", "IMAGE_SAFETY"), ("no_image", "NO_IMAGE"), ("empty_candidates", "STOP")],
)
async def test_no_image_outcomes_are_http_200(
    http: aiohttp.ClientSession, fake: FakeGemini, scenario: str, finish: str
) -> None:
    status, body = await generate(http, fake, scenario=scenario)
    assert status == 200
    candidate = body["candidates"][0]
    assert candidate["finishReason"] == finish
    assert not candidate["content"].get("parts")


async def test_blocked_prompt_has_feedback_and_no_candidates(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    status, body = await generate(http, fake, scenario="prompt_blocked")
    assert status == 200
    assert "candidates" not in body
    assert body["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}


async def test_text_only_scenario_has_no_image(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    _, body = await generate(http, fake, scenario="text_only")
    (part,) = body["candidates"][0]["content"]["parts"]
    assert part["text"].startswith("I can't generate that image")


async def test_jpeg_output_and_wrong_size(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    body = with_config(imageConfig={"aspectRatio": "16:9"})
    _, jpeg = await generate(http, fake, body, scenario="jpeg_output")
    inline = jpeg["candidates"][0]["content"]["parts"][1]["inlineData"]
    assert inline["mimeType"] == "image/jpeg"
    assert image_info(inline["data"]) == ("JPEG", 1344, 768)
    _, wrong = await generate(http, fake, body, scenario="wrong_size")
    data = wrong["candidates"][0]["content"]["parts"][1]["inlineData"]["data"]
    assert image_info(data) == ("PNG", 1024, 1024)


async def test_truncated_body_breaks_mid_image(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    headers = {"x-goog-api-key": KEY, "x-fake-scenario": "truncated"}
    async with http.post(url(fake, FLASH), json=PROMPT, headers=headers) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_disconnect_closes_without_answer(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    headers = {"x-goog-api-key": KEY, "x-fake-scenario": "disconnect"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await http.post(url(fake, FLASH), json=PROMPT, headers=headers)


async def test_unknown_scenario_header_is_a_fake_error(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    headers = {"x-goog-api-key": KEY, "x-fake-scenario": "banana"}
    async with http.post(url(fake, FLASH), json=PROMPT, headers=headers) as response:
        assert response.status == 400
        assert "unknown fake scenario 'banana'" in await response.text()


# --- scenario control and holds -------------------------------------------------------------------


async def test_script_then_ok_for_one_model(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    fake.script("unavailable", "capacity", model=PRO)
    assert (await generate(http, fake, model=FLASH))[0] == 200
    statuses = [(await generate(http, fake, model=PRO))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [r.scenario for r in fake.requests] == ["ok", "unavailable", "capacity", "ok"]


async def test_set_mode_until_clear(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    fake.set_mode("quota_zero")
    assert (await generate(http, fake))[0] == 429
    assert (await generate(http, fake))[0] == 429
    fake.clear()
    assert (await generate(http, fake))[0] == 200


async def test_fail_rate_mixes_in_failures(http: aiohttp.ClientSession, fake: FakeGemini) -> None:
    fake.fail_rate(0.5, "capacity_429", seed=3)
    statuses = [(await generate(http, fake, scenario=None))[0] for _ in range(12)]
    assert set(statuses) == {200, 429}
    assert fake.counts["capacity_429"] + fake.counts["ok"] == 12


async def test_hold_delays_answers_but_not_quota_rejections(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    fake.hold(0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await generate(http, fake, scenario="rate_limited")
    assert loop.time() - started < 0.25
    await generate(http, fake)
    assert loop.time() - started >= 0.3


async def test_slow_hold_is_cancelled_when_client_leaves(
    http: aiohttp.ClientSession, fake: FakeGemini
) -> None:
    headers = {"x-goog-api-key": KEY, "x-fake-scenario": "slow"}
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.3):
            await http.post(url(fake, FLASH), json=PROMPT, headers=headers)
    for _ in range(50):
        if fake.holding == 0:
            break
        await asyncio.sleep(0.02)
    assert fake.holding == 0


async def test_five_hundred_held_requests_at_once(http: aiohttp.ClientSession) -> None:
    """Benchmarks hold hundreds of requests; all must be accepted, held together and answered."""
    async with FakeGemini(hold_seconds=1.5) as fake:
        headers = {"x-goog-api-key": "any", "x-fake-scenario": "no_image"}

        async def one() -> int:
            async with http.post(url(fake, FLASH), json=PROMPT, headers=headers) as response:
                await response.read()
                return response.status

        peak = 0
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one()) for _ in range(500)]
            while not all(task.done() for task in tasks):
                peak = max(peak, fake.holding)
                await asyncio.sleep(0.01)
        assert peak == 500
        assert [task.result() for task in tasks] == [200] * 500
