"""FakeAzureOpenAI: OpenAI's Images API as an Azure OpenAI resource serves it (reference
openai-images.md §10)::

    POST /openai/deployments/{deployment}/images/generations?api-version=...   JSON
    POST /openai/deployments/{deployment}/images/edits?api-version=...         multipart or JSON

Bodies and images are FakeOpenAI's (validation included); what Azure changes is here:

- Auth: ``api-key: <key>``, or ``Authorization: Bearer <Entra token>`` (both checked against
  ``keys``; ``None`` accepts any non-empty one).
- ``api-version`` is required: missing → 404 "Resource not found"; one not in ``api_versions``
  → 400 "API version not supported" (both wordings from memory, unverified).
- The deployment in the path picks the model (``deployments``: name → model; by default a
  deployment is named after its model); the body's ``model`` is ignored, as Azure does. An
  unknown deployment is 404 ``DeploymentNotFound``.
- Errors are Azure's ``{"error": {"code", "message", ...}}`` bodies; the content filter adds
  ``innererror`` (``inner_error`` in the images docs) with ``ResponsibleAIPolicyViolation`` and
  per-category ``content_filter_result(s)``.
- Answers carry Azure's headers (``apim-request-id``, ``x-ms-region``,
  ``x-ratelimit-remaining-*``), not OpenAI's organisation headers.

| scenario | answer |
|---|---|
| ``ok``, ``slow``, ``wrong_size``, ``empty_data``, ``truncated``, ``disconnect`` | as FakeOpenAI |
| ``rate_limited`` *instant* | 429 code "429", "... exceeded call rate limit ... Please retry after N seconds.", ``retry-after`` and ``retry-after-ms`` |
| ``rate_limited_no_header`` *instant* | the same 429 with the wait only in the message |
| ``content_filter`` *instant* | 400 ``content_filter`` with ``innererror.content_filter_result`` (sexual: medium) |
| ``content_policy_violation`` *instant* | 400 as the images docs show it: ``inner_error.content_filter_results`` |
| ``moderation_blocked`` *instant* | 400 OpenAI's own GPT-image moderation body, passed through |
| ``unauthorized`` *instant* | 401 "Access denied due to invalid subscription key or wrong API endpoint..." |
| ``forbidden`` *instant* | 403 code ``Forbidden`` (third-party captures, unverified) |
| ``deployment_not_found`` *instant* | 404 ``DeploymentNotFound`` |
| ``server_error`` | 500 OpenAI's ``server_error`` body, passed through |
| ``unavailable`` | 503 ``ServiceUnavailable`` (wording ours) |
| ``timeout`` | 408 ``Timeout`` "The operation was timeout." |
| ``bad_gateway``, ``cf_524`` | the proxy pages |

Run alone: ``python -m tests.fakes.azure_openai --port 9003 [...]`` (FakeUpstream's options).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import openai_failures, openai_wire
from tests.fakes.openai import FakeOpenAI, _failure_context
from tests.fakes.openai_failures import ErrorAnswer, FailureContext
from tests.fakes.proxy_pages import ProxyAnswer
from tests.fakes.server import (
    STARTED_AT,
    FormValue,
    RecordedRequest,
    Rejection,
    decode_json_object,
    drop_connection,
    proxy_response,
    run_cli,
    send_truncated,
    splice_images,
)

API_VERSIONS = frozenset({"2024-10-21", "2025-03-01-preview", "2025-04-01-preview"})
_BASE = "/openai/deployments/{deployment}/images"


class AzureError(Exception):
    """An Azure error answer: ``{"error": {"code", "message", ...extra}}``."""

    def __init__(
        self, status: int, code: str, message: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})

    def doc(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def _verdicts(flagged: str, severity: str) -> dict[str, Any]:
    verdicts: dict[str, Any] = {
        name: {"filtered": name == flagged, "severity": severity if name == flagged else "safe"}
        for name in ("hate", "self_harm", "sexual", "violence")
    }
    verdicts["jailbreak"] = {"filtered": False, "detected": False}
    return verdicts


@dataclass(frozen=True, slots=True)
class _Answer:
    """An Azure error with the headers that go with it."""

    error: AzureError
    headers: dict[str, str]


def _rate_limited(ctx: FailureContext, header: bool) -> _Answer:
    seconds = max(1, math.ceil(ctx.retry_after))
    error = AzureError(
        429,
        "429",
        "Requests to the Images_Generations Operation under Azure OpenAI API version "
        "2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing "
        f"tier. Please retry after {seconds} seconds. Please go here: "
        "https://aka.ms/oai/quotaincrease if you would like to further increase the default "
        "rate limit.",
    )
    headers = {
        "retry-after": str(seconds),
        "retry-after-ms": str(round(ctx.retry_after * 1000)),
        "x-ratelimit-remaining-requests": "0",
    }
    return _Answer(error, headers if header else {})


def _content_filter(ctx: FailureContext) -> AzureError:
    # The body Azure documents for filtered chat prompts; gpt-image deployments use it too
    # (third-party captures, unverified for images).
    return AzureError(
        400,
        "content_filter",
        "The response was filtered due to the prompt triggering Azure OpenAI's content "
        "management policy. Please modify your prompt and retry. To learn more about our content "
        "filtering policies please read our documentation: https://go.microsoft.com/fwlink/"
        "?linkid=2198766",
        {
            "param": "prompt",
            "type": None,
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": _verdicts("sexual", "medium"),
            },
        },
    )


def _content_policy_violation(ctx: FailureContext) -> AzureError:
    # The shape Azure's DALL·E docs show: `inner_error` and `content_filter_results`.
    return AzureError(
        400,
        "content_policy_violation",
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
        {
            "inner_error": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_results": _verdicts("violence", "high"),
            }
        },
    )


def unauthorized() -> AzureError:
    return AzureError(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API endpoint "
        "for your resource.",
    )


def missing_key() -> AzureError:
    # API Management's wording for a request without a key (from memory, unverified).
    return AzureError(
        401,
        "401",
        "Access denied due to missing subscription key. Make sure to include subscription key "
        "when making requests to an API.",
    )


def bad_token() -> AzureError:
    # Entra ID tokens that fail validation (from memory, unverified).
    return AzureError(
        401,
        "401",
        "Unauthorized. Access token is missing, invalid, audience is incorrect "
        "(https://cognitiveservices.azure.com), or have expired.",
    )


def deployment_not_found() -> AzureError:
    return AzureError(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again.",
    )


def resource_not_found() -> AzureError:
    return AzureError(404, "404", "Resource not found")


def api_version_not_supported() -> AzureError:
    return AzureError(400, "BadRequest", "API version not supported")


_AzureFailure = AzureError | _Answer | ErrorAnswer | ProxyAnswer

_BUILDERS: dict[str, Callable[[FailureContext], _AzureFailure]] = {
    "rate_limited": lambda ctx: _rate_limited(ctx, header=True),
    "rate_limited_no_header": lambda ctx: _rate_limited(ctx, header=False),
    "content_filter": _content_filter,
    "content_policy_violation": _content_policy_violation,
    "unauthorized": lambda ctx: unauthorized(),
    "forbidden": lambda ctx: AzureError(
        403,
        "Forbidden",
        "Access to this resource has been restricted. Contact your administrator.",
    ),
    "deployment_not_found": lambda ctx: deployment_not_found(),
    "unavailable": lambda ctx: AzureError(
        503,
        "ServiceUnavailable",
        "The service is temporarily unable to process your request. Please try again later.",
    ),
    "timeout": lambda ctx: AzureError(408, "Timeout", "The operation was timeout."),
}
# Answered as OpenAI's own bodies: the model behind Azure writes them.
_PASSED_THROUGH = ("moderation_blocked", "server_error", "bad_gateway", "cf_524")

SCENARIOS = frozenset(
    {*_BUILDERS, *_PASSED_THROUGH, *openai_failures.IMAGE_SCENARIOS, "disconnect"}
)
INSTANT_SCENARIOS = frozenset(
    {"rate_limited", "rate_limited_no_header", "content_filter", "content_policy_violation",
     "moderation_blocked", "unauthorized", "forbidden", "deployment_not_found"}
)  # fmt: skip


def failure(scenario: str, ctx: FailureContext) -> _AzureFailure | None:
    builder = _BUILDERS.get(scenario)
    if builder is not None:
        return builder(ctx)
    if scenario in _PASSED_THROUGH:
        return openai_failures.failure(scenario, ctx)
    return None


class FakeAzureOpenAI(FakeOpenAI):
    """An Azure OpenAI resource with image deployments (see the module docstring).

    ``deployments`` maps deployment names to models (default: every OpenAI image model, each
    deployed under its own name). ``api_versions`` are the versions accepted.
    """

    scenario_names = SCENARIOS
    instant_scenarios = INSTANT_SCENARIOS
    # Azure bills by subscription, not prepaid credit; a key without quota is refused like a
    # rate limit (our choice).
    quota_zero_scenario = "rate_limited"

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        hold_seconds: float = 0.0,
        record: bool = True,
        pretty_json: bool = True,
        deployments: Mapping[str, str] | None = None,
        api_versions: Iterable[str] = API_VERSIONS,
    ) -> None:
        self.deployments = dict(
            deployments or {model: model for model in openai_wire.ACTIVE_MODELS}
        )
        self.api_versions = frozenset(api_versions)
        super().__init__(
            keys=keys, hold_seconds=hold_seconds, record=record, pretty_json=pretty_json
        )

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post(_BASE + "/generations", self._azure_generations)
        app.router.add_post(_BASE + "/edits", self._azure_edits)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        app.on_response_prepare.append(self._add_azure_headers)

    # --- routes ---------------------------------------------------------------------------------

    async def _azure_generations(self, request: web.Request) -> web.StreamResponse:
        body = decode_json_object(await request.read())
        record = self.begin(request, body)
        key, model = self._admit(request)
        if body is None:
            raise self._rejection(openai_wire.invalid_json())
        parsed = self._validated(openai_wire.parse_generation, {**body, "model": model})
        return await self._answer(request, record, key, parsed)

    async def _azure_edits(self, request: web.Request) -> web.StreamResponse:
        if request.content_type == "multipart/form-data":
            form = await self._read_form(request)
            record = self.begin(request, None, form)
            key, model = self._admit(request)
            # Azure serves the deployment's model whatever the body says.
            named: dict[str, list[FormValue]] = {**form, "model": [model]}
            parsed = self._validated(openai_wire.parse_edit_form, named)
        else:
            body = decode_json_object(await request.read())
            record = self.begin(request, body)
            key, model = self._admit(request)
            if body is None:
                raise self._rejection(openai_wire.invalid_json())
            parsed = self._validated(openai_wire.parse_edit_json, {**body, "model": model})
        return await self._answer(request, record, key, parsed)

    async def _not_found(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        return self._azure_json(resource_not_found())

    # --- checks, in the order Azure makes them (our choice) -------------------------------------

    def _admit(self, request: web.Request) -> tuple[str, str]:
        """(key, model) for an admitted request; raises the Azure rejection otherwise."""
        key = self._azure_key(request)
        version = request.query.get("api-version")
        if version is None:
            raise self._azure_rejection(resource_not_found())
        if version not in self.api_versions:
            raise self._azure_rejection(api_version_not_supported())
        model = self.deployments.get(request.match_info["deployment"])
        if model is None:
            raise self._azure_rejection(deployment_not_found())
        return key, model

    def _azure_key(self, request: web.Request) -> str:
        key = request.headers.get("api-key", "").strip()
        if key:
            if not self.key_accepted(key):
                raise self._azure_rejection(unauthorized())
            return key
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            if not self.key_accepted(token):
                raise self._azure_rejection(bad_token())
            return token
        raise self._azure_rejection(missing_key())

    # --- answers --------------------------------------------------------------------------------

    async def _answer(
        self,
        request: web.Request,
        record: RecordedRequest,
        key: str,
        parsed: openai_wire.ImagesRequest,
    ) -> web.StreamResponse:
        scenario = self.choose(request, record, parsed.model, key, images=parsed.n)
        await self.wait(scenario, parsed.model)
        if scenario == "disconnect":
            return drop_connection(request)
        outcome = failure(scenario, _failure_context(request, record, parsed, self.retry_after))
        if isinstance(outcome, AzureError):
            return self._azure_json(outcome)
        if isinstance(outcome, _Answer):
            return self._azure_json(outcome.error, outcome.headers)
        if isinstance(outcome, ErrorAnswer):
            return self._json(outcome.error.status, outcome.error.doc(), outcome.headers)
        if outcome is not None:
            return proxy_response(outcome)
        body, content_type = self._image_body(scenario, parsed)
        if scenario == "truncated":
            return await send_truncated(request, body, content_type)
        return web.Response(body=body, content_type=content_type)

    def _azure_json(
        self, error: AzureError, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return self._json(error.status, error.doc(), dict(headers or {}))

    def _azure_rejection(self, error: AzureError) -> Rejection:
        return Rejection(error.status, splice_images(error.doc(), pretty=self.pretty_json))

    async def _add_azure_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if response.content_type == "text/html":
            return  # a proxy's page
        started = request.get(STARTED_AT, time.monotonic())
        request_id = secrets.token_hex(16)
        defaults = {
            "apim-request-id": request_id,
            "x-request-id": request_id,
            "x-ms-region": "East US",
            "x-ms-rai-invoked": "true",
            "x-envoy-upstream-service-time": str(
                max(1, round((time.monotonic() - started) * 1000))
            ),
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-remaining-tokens": "-1",  # the -1 placeholders of the reference
        }
        for name, value in defaults.items():
            response.headers.setdefault(name, value)


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(FakeAzureOpenAI, "python -m tests.fakes.azure_openai", argv)


if __name__ == "__main__":
    main()
