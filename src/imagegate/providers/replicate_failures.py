"""Classify Replicate failures into FailureKinds (shared/reference/fal-replicate.md, Replicate).

Two kinds of failure come back from Replicate:

- an HTTP error on a call, as RFC 7807 problem JSON `{"type","title","status","detail"}`
  (REP-SDK `ReplicateError`); 422 adds `invalid_fields: [{"field": "input.x", ...}]`
  (from memory of real answers, unverified) and its `detail` lists `- input.x: why` lines;
- a prediction that ran and ended `failed` (its `error` is free text written by the model or the
  platform) or `canceled` (someone cancelled it: the web UI, another client, an operator).

Safety refusals only exist as `failed` predictions, worded by each model: FLUX.1's safety checker
says "All generated images contained NSFW content", Replicate's own filter "The input or output
was flagged as sensitive. Please try again with different inputs. (E005)" (both from public
code and issue threads that quote them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.providers._http import (
    by_status,
    retry_after_seconds,
    unstructured_failure,
)

K = FailureKind
PROVIDER = "Replicate"
_SAFETY = re.compile(
    r"nsfw|flagged as sensitive|\(E005\)|safety|content polic|moderat|inappropriate", re.I
)
_INPUT_FIELD = re.compile(r"input\.([A-Za-z0-9_]+)")
_THROTTLE_WAIT = re.compile(r"available in (\d+(?:\.\d+)?) second", re.I)


def classify_failure(
    status: int, headers: Mapping[str, str], body: bytes, *, target: str
) -> UpstreamError:
    """An HTTP failure of a Replicate call; `target` names the model or deployment called."""
    problem = _problem(body)
    if problem is None:
        return unstructured_failure(status, body, PROVIDER, "Replicate's problem JSON")
    detail = str(problem.get("detail") or problem.get("title") or "")
    title = str(problem.get("title") or "")
    common: dict[str, Any] = {"status": status, "provider_code": title, "provider_message": detail}
    if status in (401, 403):
        return UpstreamError(
            K.AUTH,
            f"Replicate refused the API token ({detail[:160]}); check the environment variable"
            " named in the provider's keys",
            **common,
        )
    if status == 402:
        return UpstreamError(
            K.BILLING,
            "the Replicate account behind this token is out of credit; add credit at"
            " replicate.com/account/billing, then wait a few minutes",
            **common,
        )
    if status == 404 or (status == 422 and "version" in detail.lower()):
        return UpstreamError(
            K.NOT_FOUND,
            f"Replicate has no {target}, or this token may not run it ({detail[:160]}); check the"
            " deployment's model (owner/name or owner/name:version) or its `deployment` option",
            **common,
        )
    if status == 429:
        return UpstreamError(
            K.RATE_LIMITED,
            f"Replicate throttled the request ({detail[:160]})",
            retry_after=_retry_after(headers, detail),
            **common,
        )
    if status in (400, 409, 413, 422):
        param = invalid_field(problem, detail)
        named = f" (input `{param}`)" if param else ""
        return UpstreamError(
            K.BAD_REQUEST,
            f"Replicate rejected the input for {target}{named}: {detail[:300]}",
            param=param,
            **common,
        )
    return by_status(status, PROVIDER, detail, title, **common)


def invalid_field(problem: Mapping[str, Any], detail: str) -> str | None:
    """The input field a validation failure names: `invalid_fields[0].field`, else the first
    `input.<name>` in the detail text."""
    fields = problem.get("invalid_fields")
    if isinstance(fields, list) and fields and isinstance(fields[0], dict):
        match = _INPUT_FIELD.search(str(fields[0].get("field") or ""))
        if match:
            return match.group(1)
    match = _INPUT_FIELD.search(detail)
    return match.group(1) if match else None


def classify_failed(error: str | None, prediction_id: str) -> UpstreamError:
    """A prediction that ended `failed`: a safety refusal, or the model or platform failing."""
    text = (error or "").strip()
    common: dict[str, Any] = {"provider_code": "failed", "provider_message": text}
    if _SAFETY.search(text):
        return UpstreamError(
            K.SAFETY,
            f"the model's safety filter refused the prompt or its output ({text[:160]});"
            " rephrase the prompt",
            **common,
        )
    if text.lower().startswith("input validation"):
        return UpstreamError(
            K.BAD_REQUEST, f"Replicate could not use an input: {text[:300]}", **common
        )
    return UpstreamError(
        K.UNAVAILABLE,
        f"the Replicate prediction {prediction_id} failed ({text[:160] or 'no error text'})",
        **common,
    )


def classify_canceled(prediction_id: str) -> UpstreamError:
    return UpstreamError(
        K.UNAVAILABLE,
        f"the Replicate prediction {prediction_id} was canceled by someone else (the web UI,"
        " another client of the token, or an operator) before it finished",
        provider_code="canceled",
    )


def _retry_after(headers: Mapping[str, str], detail: str) -> float | None:
    hinted = retry_after_seconds(headers)
    if hinted is not None:
        return hinted
    # "Request was throttled. Expected available in 8 seconds." (Django REST framework wording)
    match = _THROTTLE_WAIT.search(detail)
    return float(match.group(1)) if match else None


def _problem(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, dict) and ("detail" in parsed or "title" in parsed):
        return parsed
    return None
