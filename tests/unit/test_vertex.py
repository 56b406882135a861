"""Vertex AI: URLs, the Gemini body with its native output format, failure classification, and
the service-account token flow (google-auth's real one) against FakeVertex."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from imagegate.core.deployment import Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.payload import decode
from imagegate.core.request import ImageRequest
from imagegate.providers._http import make_session
from imagegate.providers.vertex import (
    DEFAULT_BASE_URL,
    VertexProvider,
    capabilities_for,
    gemini_body,
    model_url,
)
from imagegate.providers.vertex_auth import REFRESH_MARGIN, TokenSource
from imagegate.providers.vertex_failures import classify_failure
from tests.fakes.vertex import FakeVertex, service_account_info

GEMINI = "gemini-3-pro-image-preview"
IMAGEN = "imagen-4.0-generate-001"
SA_ENV = "IMAGEGATE_TEST_VERTEX_SA"


def deployment(model: str = GEMINI, base_url: str = DEFAULT_BASE_URL, **options: Any) -> Deployment:
    return Deployment("dep", "vertex", "vertex", model, base_url, options=options)


def request(model: str = GEMINI, **fields: Any) -> ImageRequest:
    return ImageRequest(prompt="a fox", model=model, deadline=time.monotonic() + 30, **fields)


# --- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "host"),
    [
        (None, "https://aiplatform.googleapis.com"),
        ("global", "https://aiplatform.googleapis.com"),
        ("us", "https://aiplatform.us.rep.googleapis.com"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com"),
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
    ],
)
def test_the_host_follows_the_location(location: str | None, host: str) -> None:
    options = {} if location is None else {"location": location}
    url = model_url(deployment(**options), "generateContent", "p1")
    where = location or "global"
    assert url == (
        f"{host}/v1/projects/p1/locations/{where}/publishers/google/models/{GEMINI}:generateContent"
    )


def test_a_configured_base_url_wins_and_the_version_is_an_option() -> None:
    dep = deployment(IMAGEN, "http://127.0.0.1:9", location="us-central1", api_version="v1beta1")
    assert model_url(dep, "predict", "p1") == (
        "http://127.0.0.1:9/v1beta1/projects/p1/locations/us-central1/publishers/google/models/"
        f"{IMAGEN}:predict"
    )


def test_express_mode_has_no_project_and_the_global_host() -> None:
    dep = deployment(location="us-central1")
    assert model_url(dep, "generateContent", None) == (
        f"https://aiplatform.googleapis.com/v1/publishers/google/models/{GEMINI}:generateContent"
    )


def test_an_owner_slash_name_model_is_another_publishers() -> None:
    dep = deployment("acme/painter-2")
    assert model_url(dep, "predict", "p1").endswith("/publishers/acme/models/painter-2:predict")


# --- the Gemini body -------------------------------------------------------------------------


def body_of(req: ImageRequest, model: str = GEMINI) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(
        gemini_body(req, deployment(model), capabilities_for(model))
    )
    return parsed


def test_jpeg_and_its_compression_are_asked_for_natively() -> None:
    config = body_of(request(output_format="jpeg", output_compression=80))["generationConfig"]
    assert config["imageConfig"]["imageOutputOptions"] == {
        "mimeType": "image/jpeg",
        "compressionQuality": 80,
    }
    assert config["responseModalities"] == ["TEXT", "IMAGE"]


def test_webp_is_left_to_the_gateway_and_png_takes_no_compression() -> None:
    assert "imageConfig" not in body_of(request(output_format="webp"))["generationConfig"]
    png = body_of(request(output_format="png", output_compression=50))["generationConfig"]
    assert png["imageConfig"]["imageOutputOptions"] == {"mimeType": "image/png"}


def test_the_clients_own_fields_win_and_vertex_passthrough_is_merged() -> None:
    passthrough = {
        "gemini": {
            "generationConfig": {"imageConfig": {"imageOutputOptions": {"mimeType": "image/png"}}}
        },
        "vertex": {
            "labels": {"team": "imaging"},
            "generationConfig": {"imageConfig": {"personGeneration": "ALLOW_ADULT"}},
        },
    }
    body = body_of(request(output_format="jpeg", aspect_ratio="16:9", passthrough=passthrough))
    assert body["labels"] == {"team": "imaging"}
    assert body["generationConfig"]["imageConfig"] == {
        "aspectRatio": "16:9",
        "imageOutputOptions": {"mimeType": "image/png"},
        "personGeneration": "ALLOW_ADULT",
    }


def test_vertex_declares_png_and_jpeg_for_gemini_and_a_seed_for_imagen() -> None:
    assert capabilities_for(GEMINI).output_formats == ("png", "jpeg")
    assert capabilities_for(GEMINI).mask  # applied by the gateway, as on the Developer API
    assert capabilities_for(IMAGEN).seed and capabilities_for(IMAGEN).max_n == 4


# --- failures --------------------------------------------------------------------------------


def rpc(status: int, rpc_status: str, message: str, *details: dict[str, Any]) -> bytes:
    error: dict[str, Any] = {"code": status, "status": rpc_status, "message": message}
    if details:
        error["details"] = list(details)
    return orjson.dumps({"error": error})


def info(reason: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (401, rpc(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
         FailureKind.AUTH, "token"),
        (403, rpc(403, "PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied",
                  info("IAM_PERMISSION_DENIED")), FailureKind.AUTH, "roles/aiplatform.user"),
        (403, rpc(403, "PERMISSION_DENIED", "Vertex AI API has not been used in project 1",
                  info("SERVICE_DISABLED")), FailureKind.AUTH, "services enable"),
        (403, rpc(403, "PERMISSION_DENIED", "This API method requires billing to be enabled.",
                  info("BILLING_DISABLED")), FailureKind.BILLING, "billing"),
        (429, rpc(429, "RESOURCE_EXHAUSTED", "Resource exhausted. Please try again later."),
         FailureKind.CAPACITY, "Dynamic Shared Quota"),
        (429, rpc(429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/x"),
         FailureKind.RATE_LIMITED, "quota increase"),
        (404, rpc(404, "NOT_FOUND", "Publisher Model `x` was not found"),
         FailureKind.NOT_FOUND, "location"),
        (400, rpc(400, "INVALID_ARGUMENT", "Unsupported aspect ratio"),
         FailureKind.BAD_REQUEST, "Unsupported aspect ratio"),
        (503, rpc(503, "UNAVAILABLE", "The service is currently unavailable."),
         FailureKind.UNAVAILABLE, "503"),
        (502, b"<html><head><title>502 Bad Gateway</title></head></html>",
         FailureKind.UNAVAILABLE, "Vertex AI"),
    ],
)  # fmt: skip
def test_each_vertex_answer_has_its_kind_and_advice(
    status: int, body: bytes, kind: FailureKind, words: str
) -> None:
    error = classify_failure(status, {}, body)
    assert error.kind is kind
    assert words in error.diagnosis


def test_a_429_with_quota_details_is_a_rate_limit_with_its_delay() -> None:
    body = rpc(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota",
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel", "quotaValue": "10"}
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    )
    error = classify_failure(429, {}, body)
    assert (error.kind, error.retry_after) == (FailureKind.RATE_LIMITED, 7.0)


# --- the token flow, end to end --------------------------------------------------------------


@pytest_asyncio.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeVertex]:
    async with FakeVertex(keys={"express-key"}) as server:
        info = service_account_info(f"{server.base_url}/token", project="sa-project")
        monkeypatch.setenv(SA_ENV, orjson.dumps(info).decode())
        yield server


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    session = make_session()
    yield session
    await session.close()


def provider(
    fake: FakeVertex, session: aiohttp.ClientSession, model: str = GEMINI, **options: Any
) -> VertexProvider:
    options.setdefault("service_account_env", SA_ENV)
    return VertexProvider(deployment(model, fake.base_url, **options), session)


async def generate(
    vertex: VertexProvider, req: ImageRequest, key: UpstreamKey | None = None
) -> list[tuple[str, int, int]]:
    result = await vertex.generate(req, key)
    try:
        for image in result.images:
            await decode(image.source)
        return [(i.format, i.width, i.height) for i in result.images]
    finally:
        await result.aclose()


def bearer_tokens(fake: FakeVertex) -> set[str]:
    return {r.headers["authorization"] for r in fake.requests}


async def test_one_token_request_serves_many_calls(
    fake: FakeVertex, session: aiohttp.ClientSession
) -> None:
    vertex = provider(fake, session, IMAGEN, project="p1", location="us-central1")
    await asyncio.gather(*(generate(vertex, request(IMAGEN)) for _ in range(8)))
    for _ in range(4):
        await generate(vertex, request(IMAGEN, n=2))
    assert len(fake.token_requests) == 1
    assert len(fake.requests) == 12
    assert len(bearer_tokens(fake)) == 1
    assert all(r.path.startswith("/v1/projects/p1/locations/us-central1/") for r in fake.requests)


async def test_the_service_accounts_project_is_used_when_none_is_configured(
    fake: FakeVertex, session: aiohttp.ClientSession
) -> None:
    await generate(provider(fake, session), request())
    assert fake.requests[0].path.startswith("/v1/projects/sa-project/locations/global/")
    assert "x-goog-user-project" not in fake.requests[0].headers


async def test_a_service_account_file_and_a_quota_project(
    fake: FakeVertex,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "sa.json"
    path.write_bytes(orjson.dumps(service_account_info(f"{fake.base_url}/token")))
    monkeypatch.delenv(SA_ENV)
    vertex = VertexProvider(
        deployment(
            GEMINI, fake.base_url, service_account_file=str(path), quota_project="billing-p"
        ),
        session,
    )
    assert await generate(vertex, request(output_format="jpeg")) == [("jpeg", 1024, 1024)]
    sent = fake.requests[0]
    assert sent.headers["x-goog-user-project"] == "billing-p"
    image_config = sent.json["generationConfig"]["imageConfig"] if sent.json else {}
    assert image_config["imageOutputOptions"] == {"mimeType": "image/jpeg"}


async def test_application_default_credentials(
    fake: FakeVertex,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "adc.json"
    path.write_bytes(orjson.dumps(service_account_info(f"{fake.base_url}/token", "adc-project")))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    vertex = VertexProvider(deployment(GEMINI, fake.base_url), session)
    await generate(vertex, request())
    assert fake.requests[0].path.startswith("/v1/projects/adc-project/")
    assert len(fake.token_requests) == 1


async def test_a_token_is_refreshed_five_minutes_before_it_expires(fake: FakeVertex) -> None:
    now = [1000.0]
    tokens = TokenSource({"service_account_env": SA_ENV}, clock=lambda: now[0])
    first = await tokens.token()
    now[0] += 3599 - REFRESH_MARGIN - 5  # a little under: the expiry was read a moment later
    assert await tokens.token() is first
    now[0] += 10
    second = await tokens.token()
    assert second.value != first.value
    assert len(fake.token_requests) == 2


async def test_concurrent_callers_share_one_refresh(fake: FakeVertex) -> None:
    tokens = TokenSource({"service_account_env": SA_ENV})
    got = await asyncio.gather(*(tokens.token() for _ in range(20)))
    assert len({token.value for token in got}) == 1
    assert len(fake.token_requests) == 1


async def test_a_refused_grant_is_auth_and_no_model_call_is_made(
    fake: FakeVertex, session: aiohttp.ClientSession
) -> None:
    fake.refuse_tokens = True
    with pytest.raises(UpstreamError) as caught:
        await generate(provider(fake, session), request())
    assert caught.value.kind is FailureKind.AUTH
    assert "invalid_grant" in caught.value.diagnosis
    assert fake.requests == []


async def test_an_unreachable_token_endpoint_is_unavailable(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeVertex() as fake:
        dead = fake.base_url  # nothing listens here once the fake has stopped
    info = service_account_info(f"{dead}/token")
    monkeypatch.setenv(SA_ENV, orjson.dumps(info).decode())
    tokens = TokenSource({"service_account_env": SA_ENV})
    with pytest.raises(UpstreamError) as caught:
        await tokens.token()
    assert caught.value.kind is FailureKind.UNAVAILABLE


@pytest.mark.parametrize(
    ("options", "env", "words"),
    [
        ({"service_account_env": "IMAGEGATE_TEST_UNSET"}, None, "is empty"),
        ({"service_account_env": SA_ENV}, "{not json", "does not hold"),
        ({"service_account_env": SA_ENV}, '{"type": "service_account"}', "not usable"),
        ({"service_account_file": "/nonexistent/sa.json"}, None, "cannot read"),
    ],
)
async def test_unusable_credentials_are_auth_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, str], env: str | None, words: str
) -> None:
    monkeypatch.delenv("IMAGEGATE_TEST_UNSET", raising=False)
    if env is not None:
        monkeypatch.setenv(SA_ENV, env)
    with pytest.raises(UpstreamError) as caught:
        await TokenSource(options).token()
    assert caught.value.kind is FailureKind.AUTH
    assert words in caught.value.diagnosis


async def test_a_refused_token_is_dropped_and_the_next_call_fetches_another(
    fake: FakeVertex, session: aiohttp.ClientSession
) -> None:
    vertex = provider(fake, session)
    fake.script("unauthenticated")
    with pytest.raises(UpstreamError) as caught:
        await generate(vertex, request())
    assert caught.value.kind is FailureKind.AUTH
    await generate(vertex, request())
    assert len(fake.token_requests) == 2
    assert len(bearer_tokens(fake)) == 2


async def test_express_mode_sends_the_key_and_asks_for_no_token(
    fake: FakeVertex, session: aiohttp.ClientSession
) -> None:
    vertex = provider(fake, session, GEMINI, location="us-central1")
    await generate(vertex, request(), UpstreamKey("vertex:KEY", "express-key"))
    sent = fake.requests[0]
    assert sent.path == f"/v1/publishers/google/models/{GEMINI}:generateContent"
    assert sent.headers["x-goog-api-key"] == "express-key"
    assert "authorization" not in sent.headers
    assert fake.token_requests == []


async def test_a_token_is_never_shown(fake: FakeVertex) -> None:
    token = await TokenSource({"service_account_env": SA_ENV}).token()
    assert token.value not in repr(token)


async def test_imagen_returns_the_images_left_after_filtering(
    fake: FakeVertex, session: aiohttp.ClientSession
) -> None:
    vertex = provider(fake, session, IMAGEN, project="p1")
    fake.script("partly_filtered")
    result = await vertex.generate(request(IMAGEN, n=3, aspect_ratio="16:9"), None)
    try:
        assert [(i.width, i.height) for i in result.images] == [(1408, 768)]
        assert "withheld 2 image(s)" in result.notes[0]
    finally:
        await result.aclose()
    fake.script("imagen_blocked")
    with pytest.raises(UpstreamError) as caught:
        await generate(vertex, request(IMAGEN))
    assert caught.value.kind is FailureKind.SAFETY
