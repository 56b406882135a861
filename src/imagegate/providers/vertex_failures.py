"""Classify Vertex AI failures into FailureKinds (shared/reference/vertex-ai.md §5).

Vertex speaks the same google.rpc.Status errors as the Developer API, so whatever is not
Vertex's own goes through gemini_failures. Vertex's own: a 401 means the OAuth token (or the
express-mode key) was refused; a 403 is IAM, a disabled API or billing, each with its fix; and
a 429 usually carries no QuotaFailure at all, because under Dynamic Shared Quota it means the
shared pool is busy, not that this project used up a limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.providers import gemini_failures
from imagegate.providers._http import retry_after_seconds, unstructured_failure

K = FailureKind
PROVIDER = "Vertex AI"


def classify_failure(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """The UpstreamError for a non-2xx answer from Vertex AI (or a proxy in front of it)."""
    error = _error_object(body)
    if error is None:
        return unstructured_failure(status, body, PROVIDER, "a Google error")
    rpc_status = str(error.get("status") or "")
    message = str(error.get("message") or "")
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    reasons = {str(d["reason"]) for d in details if d.get("reason")}
    common: dict[str, Any] = {
        "status": status,
        "provider_code": rpc_status or str(status),
        "provider_message": message,
    }
    if status == 401 or rpc_status == "UNAUTHENTICATED":
        return UpstreamError(
            K.AUTH,
            "Vertex AI refused the credentials (UNAUTHENTICATED): the access token is invalid or"
            " expired, or in express mode the API key is wrong",
            **common,
        )
    if reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED"}:
        return UpstreamError(
            K.AUTH,
            "the Vertex AI express-mode API key is not valid; check the key in the environment"
            " variable named in the provider's keys",
            **common,
        )
    if status == 403 or rpc_status == "PERMISSION_DENIED":
        return _permission(reasons, message, common)
    if status == 429:
        return _exhausted(status, headers, body, details, message, common)
    if status == 404 or rpc_status == "NOT_FOUND":
        return UpstreamError(
            K.NOT_FOUND,
            f"Vertex AI has no such model here ({message[:200]}); check the model name and the"
            " location (preview image models are served from `global`)",
            **common,
        )
    return gemini_failures.classify_failure(status, headers, body)


def _permission(reasons: set[str], message: str, common: dict[str, Any]) -> UpstreamError:
    lowered = message.lower()
    if "BILLING_DISABLED" in reasons or "billing to be enabled" in lowered:
        return UpstreamError(
            K.BILLING,
            "Vertex AI needs billing on this Google Cloud project: link a billing account to it",
            **common,
        )
    if "SERVICE_DISABLED" in reasons or "has not been used in project" in lowered:
        return UpstreamError(
            K.AUTH,
            "the Vertex AI API (aiplatform.googleapis.com) is not enabled in this project:"
            " enable it in the Cloud console or with `gcloud services enable"
            " aiplatform.googleapis.com`",
            **common,
        )
    return UpstreamError(
        K.AUTH,
        "Vertex AI denied the call (PERMISSION_DENIED): the service account needs the IAM"
        " permission aiplatform.endpoints.predict on the project (role Vertex AI User,"
        " roles/aiplatform.user), and the Vertex AI API must be enabled",
        **common,
    )


def _exhausted(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    details: list[dict[str, Any]],
    message: str,
    common: dict[str, Any],
) -> UpstreamError:
    if any(str(d.get("@type", "")).endswith("QuotaFailure") for d in details):
        return gemini_failures.classify_failure(status, headers, body)
    if "quota exceeded for" in message.lower():
        # A fixed per-project quota (Imagen's requests per minute, from memory of public
        # reports, unverified): it refills each minute, and an increase can be requested.
        return UpstreamError(
            K.RATE_LIMITED,
            f"Vertex AI project quota reached ({message[:200]}); wait for the minute to pass,"
            " spread load over projects, or request a quota increase",
            retry_after=retry_after_seconds(headers),
            **common,
        )
    return UpstreamError(
        K.CAPACITY,
        "Vertex AI's shared capacity for this model is busy (429 RESOURCE_EXHAUSTED without a"
        " quota violation: Dynamic Shared Quota contention, not this project's limit); back off"
        " and retry, or buy Provisioned Throughput",
        retry_after=retry_after_seconds(headers),
        **common,
    )


def _error_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, list) and len(parsed) == 1:  # the streamed-array form wraps errors
        parsed = parsed[0]
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error: Mapping[str, Any] = parsed["error"]
        return error
    return None
