"""FakeOpenAI speaks the OpenAI Images API wire format, scenario by scenario."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from PIL import Image

from tests.fakes.conftest import image_info
from tests.fakes.images import encoded_image
from tests.fakes.openai import FakeOpenAI

KEY = "sk-test-good-key-1234"
AUTH = {"Authorization": f"Bearer {KEY}"}
RATE_HEADERS = (
    "x-request-id",
    "openai-processing-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(keys={KEY}) as server:
        yield server


async def generate(
    http: aiohttp.ClientSession,
    fake: FakeOpenAI,
    scenario: str | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    body = {"model": "gpt-image-1.5", "prompt": "a red fox", **fields}
    sent = {**AUTH, **(headers or {})}
    if scenario:
        sent["x-fake-scenario"] = scenario
    async with http.post(f"{fake.base_url}/v1/images/generations", json=body, headers=sent) as r:
        return r.status, orjson.loads(await r.read()), r


def png_with_alpha(width: int, height: int, hole: bool = True) -> bytes:
    """A mask: opaque, with a fully transparent (alpha 0) square marking the area to edit."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    if hole:
        mask.paste((0, 0, 0, 0), (0, 0, width // 2, height // 2))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


def edit_form(images: list[bytes], mask: bytes | None = None, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in {"model": "gpt-image-1.5", "prompt": "add snow", **fields}.items():
        form.add_field(name, value)
    field = "image" if len(images) == 1 else "image[]"
    for index, data in enumerate(images):
        form.add_field(field, data, filename=f"in{index}.png", content_type="image/png")
    if mask is not None:
        form.add_field("mask", mask, filename="mask.png", content_type="image/png")
    return form


# --- generations ----------------------------------------------------------------------------------


async def test_generation_answers_reference_shape(
    http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    """n images of the asked format and size, resolved settings, usage, and OpenAI's headers."""
    status, body, response = await generate(
        http, fake, n=2, size="1536x1024", output_format="webp", output_compression=80
    )
    assert status == 200
    assert [image_info(item["b64_json"]) for item in body["data"]] == [("WEBP", 1536, 1024)] * 2
    assert body["size"] == "1536x1024"
    assert (body["quality"], body["background"], body["output_format"]) == (
        "medium",
        "opaque",
        "webp",
    )
    usage = body["usage"]
    assert usage["output_tokens"] == usage["output_tokens_details"]["image_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert isinstance(body["created"], int)
    assert all(name in response.headers for name in RATE_HEADERS)
    assert response.headers["x-request-id"].startswith("req_")


async def test_auto_size_is_1024_square(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    _, body, _ = await generate(http, fake, size="auto", quality="high")
    assert body["size"] == "1024x1024"
    assert body["quality"] == "high"
    assert image_info(body["data"][0]["b64_json"]) == ("PNG", 1024, 1024)


async def test_flexible_sizes_on_gpt_image_2(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    _, body, _ = await generate(http, fake, model="gpt-image-2", size="768x256")
    assert image_info(body["data"][0]["b64_json"]) == ("PNG", 768, 256)
    status, body, _ = await generate(http, fake, model="gpt-image-2.5-flare", quality="xhigh")
    assert status == 200
    assert body["quality"] == "xhigh"


async def test_stream_sends_partials_then_completed(
    http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    body = {"model": "gpt-image-1.5", "prompt": "fox", "stream": True, "partial_images": 2}
    async with http.post(f"{fake.base_url}/v1/images/generations", json=body, headers=AUTH) as r:
        assert r.content_type == "text/event-stream"
        raw = await r.read()
    events = [
        dict(line.split(": ", 1) for line in e.split("\n")) for e in raw.decode().split("\n\n") if e
    ]
    kinds = [event["event"] for event in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    datas = [orjson.loads(event["data"]) for event in events]
    assert [d.get("partial_image_index") for d in datas] == [0, 1, None]
    assert datas[-1]["type"] == "image_generation.completed"
    assert "usage" in datas[-1]
    assert image_info(datas[-1]["b64_json"])[0] == "PNG"


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"size": "512x512"}, "size", "invalid_value"),
        ({"model": "gpt-image-2", "size": "1000x1000"}, "size", "invalid_value"),
        ({"model": "gpt-image-2", "size": "3840x960"}, "size", "invalid_value"),
        ({"model": "gpt-image-2", "size": "2400x2400"}, "size", "invalid_value"),
        ({"quality": "xhigh"}, "quality", "invalid_value"),
        ({"quality": "hd"}, "quality", "invalid_value"),
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"n": 11}, "n", "integer_above_max_value"),
        ({"n": "2"}, "n", "invalid_type"),
        ({"output_format": "gif"}, "output_format", "invalid_value"),
        ({"output_format": "jpeg", "output_compression": 101}, "output_compression", "integer_above_max_value"),
        ({"output_compression": 50}, "output_compression", "invalid_value"),
        ({"output_format": "jpeg", "background": "transparent"}, "background", "invalid_value"),
        ({"response_format": "url"}, "response_format", "invalid_value"),
        ({"colour": "red"}, "colour", "unknown_parameter"),
        ({"prompt": ""}, "prompt", "empty_string"),
        ({"prompt": "x" * 32_001}, "prompt", "string_above_max_length"),
        ({"partial_images": 4}, "partial_images", "integer_above_max_value"),
    ],
)  # fmt: skip
async def test_invalid_requests_name_the_param(
    http: aiohttp.ClientSession, fake: FakeOpenAI, fields: dict[str, Any], param: str, code: str
) -> None:
    status, body, response = await generate(http, fake, **fields)
    assert status == 400
    assert (body["error"]["param"], body["error"]["code"]) == (param, code)
    assert body["error"]["type"] == "invalid_request_error"
    assert "x-request-id" in response.headers
    assert fake.requests[-1].scenario is None


async def test_missing_prompt(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    body = {"model": "gpt-image-1-mini"}
    async with http.post(f"{fake.base_url}/v1/images/generations", json=body, headers=AUTH) as r:
        error = (await r.json())["error"]
    assert (r.status, error["param"], error["code"]) == (
        400,
        "prompt",
        "missing_required_parameter",
    )


async def test_png_with_full_compression_and_b64_json_are_fine(
    http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    status, _, _ = await generate(http, fake, output_compression=100, response_format="b64_json")
    assert status == 200


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-2", "dall-e-3"])
async def test_retired_models_are_gone(
    http: aiohttp.ClientSession, fake: FakeOpenAI, model: str
) -> None:
    status, body, _ = await generate(http, fake, model=model)
    assert (status, body["error"]["code"]) == (404, "model_not_found")
    assert "shut down" in body["error"]["message"]


async def test_unknown_model(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    status, body, _ = await generate(http, fake, model="gpt-image-9")
    assert status == 404
    assert body["error"] == {
        "message": "The model `gpt-image-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


async def test_bad_and_missing_keys(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    status, body, _ = await generate(http, fake, headers={"Authorization": "Bearer sk-wrong-9876"})
    assert (status, body["error"]["code"]) == (401, "invalid_api_key")
    assert body["error"]["message"].startswith("Incorrect API key provided: sk-")
    assert "9876." in body["error"]["message"]
    assert "wrong" not in body["error"]["message"]
    async with http.post(f"{fake.base_url}/v1/images/generations", json={}) as response:
        assert response.status == 401
        assert "didn't provide an API key" in (await response.json())["error"]["message"]


async def test_models_and_invalid_url(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    async with http.get(f"{fake.base_url}/v1/models", headers=AUTH) as response:
        ids = [m["id"] for m in (await response.json())["data"]]
    assert "gpt-image-1.5" in ids
    assert "gpt-image-1" not in ids
    async with http.get(f"{fake.base_url}/v1/images/generations", headers=AUTH) as response:
        assert response.status == 404
        body = await response.json()
        assert body["error"]["message"] == "Invalid URL (GET /v1/images/generations)"


# --- edits ----------------------------------------------------------------------------------------


async def test_multipart_edit_records_inputs_and_mask(
    http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    """Repeated image[] parts and a mask arrive as files; tests can read the mask's alpha."""
    first, second = encoded_image(512, 384), encoded_image(300, 300)
    form = edit_form([first, second], png_with_alpha(512, 384), size="auto", n="2")
    async with http.post(f"{fake.base_url}/v1/images/edits", data=form, headers=AUTH) as r:
        body = await r.json()
    assert r.status == 200, body
    assert [image_info(item["b64_json"]) for item in body["data"]] == [("PNG", 512, 384)] * 2
    record = fake.requests[-1]
    assert [file.data for file in record.form["image[]"]] == [first, second]  # type: ignore[union-attr]
    assert record.form["n"] == ["2"]
    (mask_file,) = record.form["mask"]
    assert not isinstance(mask_file, str)
    with Image.open(io.BytesIO(mask_file.data)) as mask:
        assert mask.getpixel((0, 0)) == (0, 0, 0, 0)  # transparent = the area to edit


async def test_edit_honours_asked_size(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    form = edit_form([encoded_image(512, 384)], size="1024x1536", output_format="jpeg")
    async with http.post(f"{fake.base_url}/v1/images/edits", data=form, headers=AUTH) as r:
        body = await r.json()
    assert image_info(body["data"][0]["b64_json"]) == ("JPEG", 1024, 1536)


@pytest.mark.parametrize(
    "mask",
    [
        png_with_alpha(256, 256),  # wrong size
        encoded_image(512, 384),  # PNG without alpha
        encoded_image(512, 384, "jpeg"),  # not a PNG
    ],
)
async def test_bad_masks_are_rejected(
    http: aiohttp.ClientSession, fake: FakeOpenAI, mask: bytes
) -> None:
    form = edit_form([encoded_image(512, 384)], mask)
    async with http.post(f"{fake.base_url}/v1/images/edits", data=form, headers=AUTH) as r:
        error = (await r.json())["error"]
    assert (r.status, error["param"]) == (400, "mask")


async def test_non_image_upload_is_rejected(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    form = edit_form([b"not an image at all"])
    async with http.post(f"{fake.base_url}/v1/images/edits", data=form, headers=AUTH) as r:
        error = (await r.json())["error"]
    assert (r.status, error["param"]) == (400, "image")
    assert error["message"].startswith("Invalid image file or mode for image 1")


async def test_json_edit_with_data_urls(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    picture = "data:image/png;base64," + base64.b64encode(encoded_image(320, 240)).decode()
    mask = "data:image/png;base64," + base64.b64encode(png_with_alpha(320, 240)).decode()
    body = {
        "model": "gpt-image-2",
        "prompt": "add snow",
        "images": [{"image_url": picture}],
        "mask": {"image_url": mask},
        "stream": True,
    }
    async with http.post(f"{fake.base_url}/v1/images/edits", json=body, headers=AUTH) as r:
        raw = await r.read()
    assert raw.startswith(b"event: image_edit.completed\ndata: ")
    event = orjson.loads(raw.split(b"data: ", 1)[1])
    assert image_info(event["b64_json"]) == ("PNG", 320, 240)
    assert event["usage"]["input_tokens_details"]["image_tokens"] > 0


# --- failure scenarios ----------------------------------------------------------------------------


async def test_rate_limited_carries_retry_headers(
    http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    status, body, response = await generate(http, fake, "rate_limited")
    assert status == 429
    assert (body["error"]["type"], body["error"]["code"]) == ("requests", "rate_limit_exceeded")
    assert "Please try again in 1s." in body["error"]["message"]
    assert response.headers["retry-after"] == "1"
    assert response.headers["retry-after-ms"] == "1000"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(
    ("scenario", "status", "error_type", "code"),
    [
        ("insufficient_quota", 429, "insufficient_quota", "insufficient_quota"),
        ("moderation_blocked", 400, "image_generation_user_error", "moderation_blocked"),
        ("content_policy_violation", 400, "invalid_request_error", "content_policy_violation"),
        ("server_error", 500, "server_error", None),
        ("unavailable", 503, "server_error", None),
        ("forbidden", 403, "invalid_request_error", None),
    ],
)
async def test_error_scenarios(
    http: aiohttp.ClientSession,
    fake: FakeOpenAI,
    scenario: str,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    got, body, response = await generate(http, fake, scenario)
    assert got == status
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["code"]) == (error_type, code)
    assert "x-request-id" in response.headers


async def test_moderation_details_and_request_id(
    http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    _, body, response = await generate(http, fake, "moderation_blocked")
    assert body["error"]["moderation_details"]["moderation_stage"] == "input"
    assert response.headers["x-request-id"] in body["error"]["message"]


@pytest.mark.parametrize(
    ("scenario", "status"), [("bad_gateway", 502), ("cf_524", 524), ("get_channel_failed", 500)]
)
async def test_proxy_pages(
    http: aiohttp.ClientSession, fake: FakeOpenAI, scenario: str, status: int
) -> None:
    headers = {**AUTH, "x-fake-scenario": scenario}
    body = {"model": "gpt-image-1.5", "prompt": "fox"}
    async with http.post(f"{fake.base_url}/v1/images/generations", json=body, headers=headers) as r:
        assert r.status == status
        await r.read()
    if r.content_type == "text/html":
        assert "x-request-id" not in r.headers  # the proxy, not OpenAI, answered


async def test_empty_data_and_wrong_size(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    status, body, _ = await generate(http, fake, "empty_data")
    assert (status, body["data"]) == (200, [])
    _, body, _ = await generate(http, fake, "wrong_size", size="1024x1536")
    assert body["size"] == "1024x1536"  # says what was asked...
    assert image_info(body["data"][0]["b64_json"]) == ("PNG", 1024, 1024)  # ...sends otherwise


async def test_truncated_and_disconnect(http: aiohttp.ClientSession, fake: FakeOpenAI) -> None:
    body = {"model": "gpt-image-1.5", "prompt": "fox"}
    target = f"{fake.base_url}/v1/images/generations"
    headers = {**AUTH, "x-fake-scenario": "truncated"}
    async with http.post(target, json=body, headers=headers) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await http.post(target, json=body, headers={**AUTH, "x-fake-scenario": "disconnect"})


async def test_script_by_key_and_model(http: aiohttp.ClientSession) -> None:
    async with FakeOpenAI(keys={"sk-a", "sk-b"}) as fake:
        fake.script("insufficient_quota", key="sk-b")
        fake.set_mode("unavailable", model="gpt-image-2")
        a = await generate(http, fake, headers={"Authorization": "Bearer sk-a"})
        b = await generate(http, fake, headers={"Authorization": "Bearer sk-b"})
        c = await generate(
            http, fake, model="gpt-image-2", headers={"Authorization": "Bearer sk-a"}
        )
        assert [a[0], b[0], c[0]] == [200, 429, 503]
        assert fake.counts == {"ok": 1, "insufficient_quota": 1, "unavailable": 1}
