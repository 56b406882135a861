"""Azure OpenAI: OpenAI's GPT image models on an Azure resource (reference openai-images.md §10).

Azure speaks OpenAI's Images API, so the body, the answer and most failures go through
providers/openai.py's functions. What differs is handled here:

- The URL names the Azure deployment, not the model, and needs an `api-version`:
  `{base_url}/openai/deployments/{deployment}/images/generations?api-version=...` (and
  `/images/edits`). `base_url` is the resource endpoint, `https://{resource}.openai.azure.com`.
  The body's `model` carries the deployment name too, as the openai SDK's `lib/azure.py` sends it.
- Auth is `api-key: <key>`, or with `auth: entra` the key slot holds a Microsoft Entra ID access
  token, sent as `Authorization: Bearer <token>` (tokens expire: something outside imagegate has
  to refresh the environment variable).
- The content filter answers 400 with code `content_filter` or `content_policy_violation` and an
  `innererror` (`inner_error` in the images docs) of code `ResponsibleAIPolicyViolation` holding
  `content_filter_result(s)` per category; a missing deployment is 404 `DeploymentNotFound`; a
  wrong key or endpoint is 401; rate limits are 429 with `retry-after` (or only "retry after N
  seconds" in the message).

Deployment options:

- `azure_deployment`: the Azure deployment name (default: the deployment's `model`).
- `model`: the underlying model (`gpt-image-1.5`...) when the config's `model` is the Azure
  deployment's name; it decides capabilities and the model booked. Default: the `model`.
- `api_version`: default `2025-04-01-preview`, the version the reference gives for image edits.
- `auth`: `api-key` (default) or `entra`.

Requests with input images are edits (multipart, as OpenAI's). Not supported: Azure's
version-less `/openai/v1/` surface (whether it carries images is unverified) and DALL·E.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
import orjson

from imagegate.catalog import Catalog
from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.request import ImageRequest
from imagegate.core.result import ImageResult
from imagegate.providers import openai
from imagegate.providers._http import unstructured_failure
from imagegate.providers.multipart import new_boundary
from imagegate.providers.openai_failures import classify_failure as classify_openai
from imagegate.providers.openai_stream import stream_images, wants_partials

K = FailureKind
LABEL = "Azure OpenAI"
DEFAULT_API_VERSION = "2025-04-01-preview"
AUTH_MODES = ("api-key", "entra")
_SAFETY_CODES = {"content_filter", "content_policy_violation", "moderation_blocked"}
_RETRY_IN_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?) second", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class AzureTarget:
    """Where and how one deployment's requests go: read once from the deployment's options."""

    endpoint: str  # the resource endpoint, without a trailing /openai
    deployment: str  # the Azure deployment name
    api_version: str
    auth: str  # api-key | entra
    model: str  # the underlying model


def target_of(deployment: Deployment) -> AzureTarget:
    """The options, checked; ConfigError names the option that is wrong."""
    options = deployment.options
    where = f"deployments.{deployment.name}"
    problems = []
    if not deployment.base_url:
        problems.append(
            f"{where}: an azure-openai provider needs base_url, the resource endpoint"
            " (https://<resource>.openai.azure.com)"
        )
    auth = str(options.get("auth", "api-key"))
    if auth not in AUTH_MODES:
        problems.append(f"{where}.options.auth: {auth!r} is not one of {', '.join(AUTH_MODES)}")
    for name in ("azure_deployment", "api_version", "model"):
        value = options.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(f"{where}.options.{name}: must be a non-empty string")
    if problems:
        raise ConfigError(problems)
    endpoint = deployment.base_url.rstrip("/")
    endpoint = endpoint.removesuffix("/openai")
    return AzureTarget(
        endpoint=endpoint,
        deployment=str(options.get("azure_deployment") or deployment.model),
        api_version=str(options.get("api_version") or DEFAULT_API_VERSION),
        auth=auth,
        model=str(options.get("model") or deployment.model),
    )


def capabilities_for(model: str) -> Capabilities:
    """The catalog's entry for the underlying model on Azure, else OpenAI's defaults for it."""
    entry = Catalog.shipped().find("azure-openai", model)
    if entry is not None and entry.capabilities is not None:
        return entry.capabilities
    return openai.capabilities_for(model)


def url_for(target: AzureTarget, operation: str) -> str:
    """`operation` is `generations` or `edits`."""
    name = urllib.parse.quote(target.deployment, safe="")
    query = urllib.parse.urlencode({"api-version": target.api_version})
    return f"{target.endpoint}/openai/deployments/{name}/images/{operation}?{query}"


def auth_headers(target: AzureTarget, key: UpstreamKey | None) -> dict[str, str]:
    if key is None:
        return {}
    if target.auth == "entra":
        return {"Authorization": f"Bearer {key.secret}"}
    return {"api-key": key.secret}


def body_fields(request: ImageRequest, upstream: Deployment, target: AzureTarget) -> dict[str, Any]:
    """OpenAI's fields, `model` set to the Azure deployment, plus `passthrough["azure-openai"]`.

    `upstream` is the deployment with the underlying model and its capabilities, so sizes are
    made for that model whatever the Azure deployment is called.
    """
    fields = openai.request_fields(request, upstream)
    fields["model"] = target.deployment
    fields.update(request.passthrough.get("azure-openai", {}))
    return fields


def build_generation(
    request: ImageRequest, upstream: Deployment, target: AzureTarget
) -> tuple[str, bytes]:
    """(url, JSON body) of a generation."""
    body = orjson.dumps(body_fields(request, upstream, target))
    return url_for(target, "generations"), body


def build_edit(
    request: ImageRequest, upstream: Deployment, target: AzureTarget, boundary: str
) -> tuple[str, bytes, str]:
    """(url, multipart body, content type) of an edit, in OpenAI's multipart form."""
    data, content_type = openai.edit_form(body_fields(request, upstream, target), request, boundary)
    return url_for(target, "edits"), data, content_type


def classify_failure(
    status: int, headers: Mapping[str, str], body: bytes, target: AzureTarget
) -> UpstreamError:
    """Azure's own answers first (content filter, auth, deployment, api-version, 429), then
    OpenAI's classification for the rest, its diagnoses naming Azure OpenAI."""
    error = _error_object(body)
    if error is None:
        return unstructured_failure(status, body, LABEL, "an Azure OpenAI error")
    message = str(error.get("message") or "")
    code = str(error.get("code") or error.get("type") or "")
    inner = _inner(error)
    common: dict[str, Any] = {"status": status, "provider_code": code, "provider_message": message}
    if code in _SAFETY_CODES or inner.get("code") == "ResponsibleAIPolicyViolation":
        categories = filtered_categories(error)
        why = f" ({', '.join(categories)})" if categories else ""
        return UpstreamError(
            K.SAFETY,
            f"Azure OpenAI's content filter blocked the request{why}; rephrase the prompt, or"
            " review the content filter configuration of the Azure deployment"
            f" `{target.deployment}`",
            param="prompt",
            **common,
        )
    if status == 401:
        return UpstreamError(K.AUTH, _auth_diagnosis(target), **common)
    if status == 403:
        return UpstreamError(
            K.AUTH,
            f"Azure OpenAI refuses this resource or key ({message[:160]}); GPT image models need"
            " an approved limited-access application, and Entra tokens a role such as"
            " Cognitive Services OpenAI User",
            **common,
        )
    if status == 404 and code == "DeploymentNotFound":
        return UpstreamError(
            K.NOT_FOUND,
            f"the Azure resource {target.endpoint} has no deployment named"
            f" `{target.deployment}`; create it in Azure AI Foundry, or set the option"
            " azure_deployment to an existing deployment's name (a new deployment can take a"
            " few minutes to appear)",
            **common,
        )
    if status == 404:
        return UpstreamError(
            K.NOT_FOUND,
            f"Azure OpenAI answered 404 ({message[:120] or 'Resource not found'}); check that"
            f" base_url is the resource endpoint and that api-version {target.api_version}"
            " serves images",
            **common,
        )
    if status == 400 and ("api version" in message.lower() or "api-version" in message.lower()):
        return UpstreamError(
            K.BAD_REQUEST,
            f"Azure OpenAI does not accept api-version {target.api_version} ({message[:160]});"
            " set the option api_version to a version that serves images",
            param="api_version",
            **common,
        )
    found = openai.relabelled(classify_openai(status, headers, body), LABEL)
    if found.kind is K.RATE_LIMITED and found.retry_after is None:
        found.retry_after = _retry_in_message(message)
    return found


def filtered_categories(error: Mapping[str, Any]) -> list[str]:
    """`sexual: medium`-style names of the categories the content filter flagged."""
    inner = _inner(error)
    results = (
        inner.get("content_filter_result")
        or inner.get("content_filter_results")
        or error.get("content_filter_results")
        or {}
    )
    if not isinstance(results, dict):
        return []
    names = []
    for name, verdict in results.items():
        if isinstance(verdict, dict) and verdict.get("filtered"):
            severity = verdict.get("severity")
            names.append(f"{name}: {severity}" if severity else str(name))
    return names


def _inner(error: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = error.get("innererror") or error.get("inner_error") or {}
    return inner if isinstance(inner, dict) else {}


def _auth_diagnosis(target: AzureTarget) -> str:
    if target.auth == "entra":
        return (
            "Azure OpenAI refused the Entra ID token: it is invalid or expired, or its audience is"
            " not https://cognitiveservices.azure.com; refresh the token in the environment"
            " variable named in the provider's keys"
        )
    return (
        "Azure OpenAI refused the api-key: the key is wrong, or it belongs to another resource"
        " than base_url's; check the environment variable named in the provider's keys"
    )


def _retry_in_message(message: str) -> float | None:
    match = _RETRY_IN_MESSAGE.search(message)
    return float(match.group(1)) if match else None


def _error_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error: Mapping[str, Any] = parsed["error"]
        return error
    return None


class AzureOpenAIProvider:
    kind: ClassVar[str] = "azure-openai"
    default_base_url: ClassVar[str] = ""  # every Azure resource has its own endpoint
    needs_key: ClassVar[bool] = True

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.target = target_of(deployment)
        self.capabilities = deployment.capabilities or capabilities_for(self.target.model)
        # The deployment as OpenAI's functions see it: the underlying model, its capabilities.
        self._upstream = dataclasses.replace(
            deployment, model=self.target.model, capabilities=self.capabilities
        )
        self._session = session

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        if request.input_images:
            url, body, content_type = build_edit(
                request, self._upstream, self.target, new_boundary()
            )
        else:
            url, body = build_generation(request, self._upstream, self.target)
            content_type = "application/json"
        headers = {"Content-Type": content_type, **auth_headers(self.target, key)}
        result = ImageResult(
            images=[], provider=self.kind, deployment=self.deployment.name, model=self.target.model
        )
        target = self.target

        def classify(
            status: int, answer_headers: Mapping[str, str], answer: bytes
        ) -> UpstreamError:
            return classify_failure(status, answer_headers, answer, target)

        if request.partials is not None and wants_partials(request):
            # Azure streams as OpenAI does: partial images pass through as they come.
            return await stream_images(
                self._session,
                url,
                body,
                headers,
                result,
                request=request,
                sink=request.partials,
                ceiling=self.deployment.timeout_seconds,
                provider=LABEL,
                classify=classify,
                usage_of=openai.usage_of,
            )
        read = await openai.post_images(
            self._session,
            url,
            body,
            headers,
            result,
            request=request,
            ceiling=self.deployment.timeout_seconds,
            provider=LABEL,
            classify=classify,
        )
        if isinstance(read, ImageResult):
            return read
        openai.whole_answer(read.body, result, LABEL)
        if not result.images:
            raise openai.no_image(LABEL)
        return result
