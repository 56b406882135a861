"""Azure OpenAI: deployment-scoped URLs, api-key / Entra auth, Azure's failure bodies — the pure
functions on bytes, then the provider against FakeAzureOpenAI."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from imagegate.core.deployment import Deployment, UpstreamKey
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.geometry import Size
from imagegate.core.request import ImageRequest, InputImage
from imagegate.providers import azure_openai as azure
from imagegate.providers._http import make_session
from imagegate.providers.azure_openai import AzureOpenAIProvider
from tests.fakes.azure_openai import FakeAzureOpenAI
from tests.fakes.images import encoded_image
from tests.fakes.proxy_pages import NGINX_502

ENDPOINT = "https://res.openai.azure.com"


def deployment(
    configured: str = "gpt-image-1.5", /, base_url: str = ENDPOINT, **options: object
) -> Deployment:
    """A deployment whose config names `configured` as its model (options may add `model`)."""
    return Deployment("az", "azure", "azure-openai", configured, base_url, options=options)


def request(**fields: object) -> ImageRequest:
    fields.setdefault("prompt", "a fox")
    return ImageRequest(model="m", **fields)  # type: ignore[arg-type]


# --- options, URL, headers, body ------------------------------------------------------------------


def test_defaults_name_the_deployment_after_the_model() -> None:
    target = azure.target_of(deployment())
    assert target == azure.AzureTarget(
        ENDPOINT, "gpt-image-1.5", azure.DEFAULT_API_VERSION, "api-key", "gpt-image-1.5"
    )
    assert azure.url_for(target, "generations") == (
        f"{ENDPOINT}/openai/deployments/gpt-image-1.5/images/generations"
        "?api-version=2025-04-01-preview"
    )


def test_options_set_deployment_version_and_the_endpoint_may_end_in_openai() -> None:
    target = azure.target_of(
        deployment(
            base_url=ENDPOINT + "/openai/",
            azure_deployment="my images/1",
            api_version="2025-03-01-preview",
        )
    )
    assert azure.url_for(target, "edits") == (
        f"{ENDPOINT}/openai/deployments/my%20images%2F1/images/edits?api-version=2025-03-01-preview"
    )


def test_wrong_options_are_config_errors_naming_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        azure.target_of(deployment(base_url="", auth="oauth", api_version=""))
    text = "\n".join(caught.value.problems)
    assert "deployments.az: an azure-openai provider needs base_url" in text
    assert "deployments.az.options.auth" in text
    assert "deployments.az.options.api_version" in text


def test_api_key_or_entra_bearer() -> None:
    key = UpstreamKey("azure:K", "secret-1")
    assert azure.auth_headers(azure.target_of(deployment()), key) == {"api-key": "secret-1"}
    entra = azure.target_of(deployment(auth="entra"))
    assert azure.auth_headers(entra, key) == {"Authorization": "Bearer secret-1"}
    assert azure.auth_headers(entra, None) == {}


def test_the_body_names_the_azure_deployment_and_sizes_follow_the_underlying_model() -> None:
    # The config's model is the Azure deployment's name; option `model` is what runs there.
    provider = AzureOpenAIProvider(deployment("prod-images", model="gpt-image-2"), None)  # type: ignore[arg-type]
    assert provider.capabilities.arbitrary_sizes
    url, body = azure.build_generation(
        request(
            aspect_ratio="16:9",
            resolution="2K",
            passthrough={"openai": {"moderation": "low"}, "azure-openai": {"user_tag": "x"}},
        ),
        provider._upstream,
        provider.target,
    )
    sent = orjson.loads(body)
    assert "/deployments/prod-images/images/generations?" in url
    assert sent["model"] == "prod-images"
    assert sent["size"] == "2736x1536"  # gpt-image-2: any WxH, multiples of 16
    assert sent["moderation"] == "low" and sent["user_tag"] == "x"


def test_capabilities_come_from_the_azure_catalog_for_the_underlying_model() -> None:
    provider = AzureOpenAIProvider(deployment("prod", model="gpt-image-1.5"), None)  # type: ignore[arg-type]
    assert provider.capabilities.sizes == ("1024x1024", "1536x1024", "1024x1536")
    assert provider.capabilities.max_n == 10 and provider.capabilities.mask


# --- failures -------------------------------------------------------------------------------------

TARGET = azure.target_of(deployment(azure_deployment="prod-images"))


def classify(status: int, doc: object, headers: dict[str, str] | None = None) -> UpstreamError:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return azure.classify_failure(status, headers or {}, body, TARGET)


def test_content_filter_bodies_are_safety_naming_the_categories() -> None:
    verdicts = {
        "sexual": {"filtered": True, "severity": "medium"},
        "hate": {"filtered": False, "severity": "safe"},
        "jailbreak": {"filtered": False, "detected": False},
    }
    chat_style = {
        "error": {
            "code": "content_filter",
            "message": "The response was filtered...",
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": verdicts,
            },
        }
    }
    images_style = {
        "error": {
            "code": "content_policy_violation",
            "message": "Your request was rejected as a result of our safety system.",
            "inner_error": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_results": verdicts,
            },
        }
    }
    for doc in (chat_style, images_style):
        error = classify(400, doc)
        assert error.kind is FailureKind.SAFETY
        assert "(sexual: medium)" in error.diagnosis
        assert "prod-images" in error.diagnosis


def test_429_takes_the_header_else_the_wait_in_the_message() -> None:
    doc = {
        "error": {
            "code": "429",
            "message": "Requests to the Images_Generations Operation under Azure OpenAI API "
            "version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 "
            "pricing tier. Please retry after 7 seconds.",
        }
    }
    with_header = classify(429, doc, {"retry-after": "3"})
    assert with_header.kind is FailureKind.RATE_LIMITED and with_header.retry_after == 3
    assert classify(429, doc).retry_after == 7
    assert "Azure OpenAI" in with_header.diagnosis


def test_401_403_404() -> None:
    unauthorized = {"error": {"code": "401", "message": "Access denied due to invalid key"}}
    error = classify(401, unauthorized)
    assert error.kind is FailureKind.AUTH and "api-key" in error.diagnosis
    entra = azure.target_of(deployment(auth="entra"))
    entra_error = azure.classify_failure(401, {}, orjson.dumps(unauthorized), entra)
    assert "Entra ID token" in entra_error.diagnosis
    assert classify(403, {"error": {"code": "Forbidden", "message": "no"}}).kind is FailureKind.AUTH
    missing = classify(404, {"error": {"code": "DeploymentNotFound", "message": "does not exist"}})
    assert missing.kind is FailureKind.NOT_FOUND
    assert "no deployment named `prod-images`" in missing.diagnosis
    assert ENDPOINT in missing.diagnosis
    nowhere = classify(404, {"error": {"code": "404", "message": "Resource not found"}})
    assert nowhere.kind is FailureKind.NOT_FOUND and "api-version" in nowhere.diagnosis


def test_other_answers_go_through_openai_rules_named_azure() -> None:
    version = classify(
        400, {"error": {"code": "BadRequest", "message": "API version not supported"}}
    )
    assert version.kind is FailureKind.BAD_REQUEST and version.param == "api_version"
    bad_size = {
        "error": {"message": "Invalid size", "type": "invalid_request_error", "param": "size",
                  "code": "invalid_value"}
    }  # fmt: skip
    assert classify(400, bad_size).param == "size"
    server = classify(
        500, {"error": {"message": "The server had an error", "type": "server_error"}}
    )
    assert server.kind is FailureKind.UNAVAILABLE and "Azure OpenAI" in server.diagnosis
    assert "OpenAI is" not in server.diagnosis.replace("Azure OpenAI", "")
    assert (
        classify(408, {"error": {"code": "Timeout", "message": "The operation was timeout."}}).kind
        is FailureKind.TIMEOUT
    )
    assert classify(502, NGINX_502).kind is FailureKind.UNAVAILABLE


# --- against the fake -----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeAzureOpenAI]:
    async with FakeAzureOpenAI(
        keys={"good-key"}, deployments={"prod-images": "gpt-image-1.5"}
    ) as server:
        yield server


async def generate(
    fake: FakeAzureOpenAI, key: str = "good-key", **options: object
) -> tuple[AzureOpenAIProvider, object]:
    options.setdefault("azure_deployment", "prod-images")
    session = make_session()
    try:
        provider = AzureOpenAIProvider(deployment(base_url=fake.base_url, **options), session)
        outcome: object
        try:
            result = await provider.generate(
                request(n=2, size=Size(1536, 1024), deadline=time.monotonic() + 30),
                UpstreamKey("azure:K", key),
            )
            outcome = result
            await result.aclose()
        except UpstreamError as error:
            outcome = error
        return provider, outcome
    finally:
        await session.close()


async def test_two_images_through_the_deployment_with_api_key(fake: FakeAzureOpenAI) -> None:
    _, result = await generate(fake)
    assert not isinstance(result, UpstreamError), result
    assert [(i.width, i.height) for i in result.images] == [(1536, 1024)] * 2  # type: ignore[attr-defined]
    assert result.model == "gpt-image-1.5" and result.usage.output_image_tokens > 0  # type: ignore[attr-defined]
    sent = fake.requests[-1]
    assert sent.headers["api-key"] == "good-key" and "authorization" not in sent.headers
    assert sent.query == {"api-version": azure.DEFAULT_API_VERSION}


async def test_entra_token_goes_as_bearer(fake: FakeAzureOpenAI) -> None:
    _, result = await generate(fake, auth="entra")
    assert not isinstance(result, UpstreamError), result
    assert fake.requests[-1].headers["authorization"] == "Bearer good-key"
    assert "api-key" not in fake.requests[-1].headers


async def test_a_wrong_key_is_auth_and_never_echoed(fake: FakeAzureOpenAI) -> None:
    _, error = await generate(fake, key="wrong-secret-value")
    assert isinstance(error, UpstreamError) and error.kind is FailureKind.AUTH
    assert "wrong-secret-value" not in error.diagnosis


async def test_an_unknown_deployment_is_named(fake: FakeAzureOpenAI) -> None:
    _, error = await generate(fake, azure_deployment="gpt-image-1.5")
    assert isinstance(error, UpstreamError) and error.kind is FailureKind.NOT_FOUND
    assert "`gpt-image-1.5`" in error.diagnosis


async def test_an_api_version_azure_does_not_serve(fake: FakeAzureOpenAI) -> None:
    _, error = await generate(fake, api_version="2023-05-15")
    assert isinstance(error, UpstreamError) and error.kind is FailureKind.BAD_REQUEST
    assert error.param == "api_version" and "2023-05-15" in error.diagnosis


async def test_an_edit_with_a_mask_goes_to_the_deployment_edits(fake: FakeAzureOpenAI) -> None:
    image = InputImage(encoded_image(64, 64, "png"), "image/png")
    mask = InputImage(encoded_image(64, 64, "png", transparent=True), "image/png")
    session = make_session()
    try:
        provider = AzureOpenAIProvider(
            deployment(base_url=fake.base_url, azure_deployment="prod-images"), session
        )
        result = await provider.generate(
            request(input_images=(image,), mask=mask), UpstreamKey("azure:K", "good-key")
        )
        await result.aclose()
    finally:
        await session.close()
    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/prod-images/images/edits"
    assert sent.form["model"] == ["prod-images"] and "mask" in sent.form
