"""Vertex AI's differences from the Developer API, as the fake speaks them (reference
vertex-ai.md): the Vertex-only request fields, the extra answer fields, the OAuth token grant,
and Vertex's error answers. The rest is gemini_wire (generateContent) and imagen_wire (:predict).

Pure functions and tables only.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakes import proxy_pages
from tests.fakes.gemini_wire import (
    TYPE_PREFIX,
    GeminiModel,
    GenerateRequest,
    RpcError,
    invalid_argument,
    parse_generate,
)
from tests.fakes.images import ImageFormat
from tests.fakes.proxy_pages import ProxyAnswer

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
# Vertex-only request fields (reference §3). The fake accepts and otherwise ignores those it
# does not emulate; generationOutputConfig (writing to Cloud Storage) it refuses.
_VERTEX_TOP = ("labels",)
_VERTEX_CONFIG = ("routingConfig", "modelSelectionConfig", "audioTimestamp", "modelArmorConfig")
PERSON_GENERATION = frozenset({"ALLOW_ALL", "ALLOW_ADULT", "ALLOW_NONE"})
PROMINENT_PEOPLE = frozenset({"ALLOW_PROMINENT_PEOPLE", "BLOCK_PROMINENT_PEOPLE"})
# imageOutputOptions.mimeType: the reference captured image/jpeg; PNG is the default. Other types
# get a 400 from the fake (our choice: the reference lists no others).
OUTPUT_MIME_TYPES: Mapping[str, ImageFormat] = {"image/png": "png", "image/jpeg": "jpeg"}
TRAFFIC_TYPE = "ON_DEMAND"
CREATE_TIME = "2026-11-21T09:30:00.123456Z"


@dataclass(frozen=True, slots=True)
class VertexGenerate:
    """A valid Vertex generateContent body: the Developer API's part and the Vertex extras."""

    generate: GenerateRequest
    fmt: ImageFormat
    compression: int | None
    person_generation: str | None
    prominent_people: str | None


def parse_vertex_generate(body: Mapping[str, Any], model: GeminiModel) -> VertexGenerate:
    """Validate the Vertex-only fields, then the rest as the Developer API does; raises RpcError."""
    stripped = {k: v for k, v in body.items() if k not in _VERTEX_TOP}
    config_key = "generation_config" if "generation_config" in body else "generationConfig"
    config = body.get(config_key)
    fmt: ImageFormat = "png"
    compression = person = prominent = None
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if _camel(k) not in _VERTEX_CONFIG}
        if "generationOutputConfig" in config or "generation_output_config" in config:
            raise invalid_argument("fake: Cloud Storage output is not emulated.")
        image_key = "image_config" if "image_config" in config else "imageConfig"
        image_config = config.get(image_key)
        if isinstance(image_config, dict):
            image_config = dict(image_config)
            person = _enum(
                _pop(image_config, "personGeneration"), PERSON_GENERATION, "person_generation"
            )
            prominent = _enum(
                _pop(image_config, "prominentPeople"), PROMINENT_PEOPLE, "prominent_people"
            )
            fmt, compression = _output_options(_pop(image_config, "imageOutputOptions"))
            config[image_key] = image_config
        stripped[config_key] = config
    generate = parse_generate(stripped, model)
    return VertexGenerate(generate, fmt, compression, person, prominent)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _pop(obj: dict[str, Any], camel: str) -> Any:
    snake = re.sub(r"[A-Z]", lambda match: "_" + match.group().lower(), camel)
    value = obj.pop(camel, None)
    snake_value = obj.pop(snake, None)
    return value if value is not None else snake_value


def _enum(value: Any, allowed: frozenset[str], name: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        where = f"generation_config.image_config.{name}"
        raise invalid_argument(f"Invalid value at '{where}', {value!r}", where)
    return str(value)


def _output_options(options: Any) -> tuple[ImageFormat, int | None]:
    if options is None:
        return "png", None
    where = "generation_config.image_config.image_output_options"
    if not isinstance(options, dict):
        raise invalid_argument(f"Invalid value at '{where}'.", where)
    mime = options.get("mimeType", options.get("mime_type", "image/png"))
    fmt = OUTPUT_MIME_TYPES.get(str(mime))
    if fmt is None:
        raise invalid_argument(f"Unsupported mime type {mime!r} for image output.", where)
    quality = options.get("compressionQuality", options.get("compression_quality"))
    if quality is not None and (
        not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100
    ):
        raise invalid_argument("compressionQuality must be between 0 and 100.", where)
    return fmt, quality


def vertex_answer(doc: dict[str, Any]) -> dict[str, Any]:
    """A Developer API answer document with Vertex's extra fields (reference §3)."""
    usage = doc.get("usageMetadata")
    if isinstance(usage, dict):
        usage["trafficType"] = TRAFFIC_TYPE
    doc["createTime"] = CREATE_TIME
    return doc


# --- the OAuth token grant ---------------------------------------------------------------------


class GrantError(Exception):
    """A refused token request, as Google's OAuth endpoint answers it: 400 {error, description}."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.body = orjson.dumps({"error": error, "error_description": description})


def check_grant(form: Mapping[str, str], token_url: str) -> dict[str, Any]:
    """The claims of a service account's signed JWT grant; raises GrantError.

    The signature is not checked (the reference: the fake need not validate the JWT), but its
    shape, audience, scope and lifetime are, as google-auth sends them.
    """
    if form.get("grant_type") != JWT_GRANT:
        raise GrantError("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type')}")
    claims = _jwt_claims(form.get("assertion") or "")
    if claims is None:
        raise GrantError("invalid_grant", "Invalid JWT: not a signed RS256 JWT.")
    # google-auth always names Google's endpoint as the audience, whatever the token_uri.
    if claims.get("aud") not in (GOOGLE_TOKEN_URL, token_url):
        raise GrantError("invalid_grant", "Invalid JWT: Failed audience check.")
    if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
        raise GrantError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or not 0 < exp - iat <= 3600:
        raise GrantError(
            "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)."
        )
    if not claims.get("iss"):
        raise GrantError("invalid_grant", "Invalid JWT: no issuer.")
    return claims


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    parts = assertion.split(".")
    if len(parts) != 3 or not parts[2]:
        return None
    try:
        header = orjson.loads(_b64url(parts[0]))
        claims = orjson.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        return None
    return claims if isinstance(claims, dict) else None


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- errors ------------------------------------------------------------------------------------


def unauthenticated() -> RpcError:
    # Google's wording for a missing or bad OAuth token (from memory of real answers; unverified).
    return RpcError(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        [
            {
                "@type": TYPE_PREFIX + "ErrorInfo",
                "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                "domain": "googleapis.com",
                "metadata": {"service": "aiplatform.googleapis.com"},
            }
        ],
    )


def api_key_invalid() -> RpcError:
    message = "API key not valid. Please pass a valid API key."
    return RpcError(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": TYPE_PREFIX + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "aiplatform.googleapis.com"},
            }
        ],
    )


def model_not_found(resource: str) -> RpcError:
    # Wording from memory of public reports (unverified).
    return RpcError(
        404,
        "NOT_FOUND",
        f"Publisher Model `{resource}` was not found or your project does not have access to "
        "it. Please ensure you are using a valid model version. For more information, see: "
        "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions",
    )


@dataclass(frozen=True, slots=True)
class VertexContext:
    project: str  # "" in express mode
    location: str
    model: str
    host: str

    @property
    def resource(self) -> str:
        where = f"projects/{self.project}/locations/{self.location}/" if self.project else ""
        return f"{where}publishers/google/models/{self.model}"


def _resource_exhausted(ctx: VertexContext) -> RpcError:
    # Dynamic Shared Quota: no QuotaFailure, no RetryInfo (reference §5; wording unverified).
    return RpcError(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource exhausted. Please try again later. Please refer to "
        "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
    )


def _quota_exceeded(ctx: VertexContext) -> RpcError:
    # A fixed per-project quota, as Imagen has (from memory of public reports; unverified).
    base = re.sub(r"-\d{3}$", "", ctx.model)
    return RpcError(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
        f"with base model: {base}. Please submit a quota increase request. "
        "https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.",
    )


def _error_info(reason: str, domain: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "@type": TYPE_PREFIX + "ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
    }


def _permission_denied(ctx: VertexContext) -> RpcError:
    # IAM (reference §5: aiplatform.endpoints.predict); wording from memory (unverified).
    resource = f"//aiplatform.googleapis.com/{ctx.resource}"
    return RpcError(
        403,
        "PERMISSION_DENIED",
        f"Permission 'aiplatform.endpoints.predict' denied on resource '{resource}' (or it may "
        "not exist).",
        [
            _error_info(
                "IAM_PERMISSION_DENIED",
                "aiplatform.googleapis.com",
                {"permission": "aiplatform.endpoints.predict", "resource": resource},
            )
        ],
    )


def _api_disabled(ctx: VertexContext) -> RpcError:
    # The API not enabled (reference §5); Google's usual wording, from memory (unverified).
    project = ctx.project or "123456789012"
    return RpcError(
        403,
        "PERMISSION_DENIED",
        f"Vertex AI API has not been used in project {project} before or it is disabled. Enable "
        "it by visiting https://console.developers.google.com/apis/api/aiplatform.googleapis.com"
        f"/overview?project={project} then retry. If you enabled this API recently, wait a few "
        "minutes for the action to propagate to our systems and retry.",
        [
            _error_info(
                "SERVICE_DISABLED",
                "googleapis.com",
                {"service": "aiplatform.googleapis.com", "consumer": f"projects/{project}"},
            )
        ],
    )


def _billing_disabled(ctx: VertexContext) -> RpcError:
    # Not in the reference; Google's usual wording, from memory (unverified).
    project = ctx.project or "123456789012"
    return RpcError(
        403,
        "PERMISSION_DENIED",
        f"This API method requires billing to be enabled. Please enable billing on project "
        f"#{project} by visiting https://console.developers.google.com/billing/enable?project="
        f"{project} then retry. If you enabled billing for this project recently, wait a few "
        "minutes for the action to propagate to our systems and retry.",
        [
            _error_info(
                "BILLING_DISABLED",
                "googleapis.com",
                {"service": "aiplatform.googleapis.com", "consumer": f"projects/{project}"},
            )
        ],
    )


def imagen_blocked() -> RpcError:
    # Imagen's safety block on :predict (reference §5: third-party reports, unverified codes).
    return RpcError(
        400,
        "INVALID_ARGUMENT",
        "Image generation failed with the following error: The response is blocked, as it may "
        "violate our policies. If you believe this is an error, please send feedback to your "
        "account team. Error Code: 58061214",
    )


FAILURES: Mapping[str, Callable[[VertexContext], RpcError | ProxyAnswer]] = {
    "resource_exhausted": _resource_exhausted,
    "quota_exceeded": _quota_exceeded,
    "permission_denied": _permission_denied,
    "api_disabled": _api_disabled,
    "billing_disabled": _billing_disabled,
    "unauthenticated": lambda ctx: unauthenticated(),
    "unavailable": lambda ctx: RpcError(
        503, "UNAVAILABLE", "The service is currently unavailable."
    ),
    "internal": lambda ctx: RpcError(
        500,
        "INTERNAL",
        "Internal error encountered. Please retry or report in "
        "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-500.",
    ),
    "deadline": lambda ctx: RpcError(504, "DEADLINE_EXCEEDED", "Deadline exceeded."),
    "imagen_blocked": lambda ctx: imagen_blocked(),
    "bad_gateway": lambda ctx: proxy_pages.nginx_502(),
    "cf_524": lambda ctx: proxy_pages.cloudflare_524(ctx.host),
}
# Scenarios answered with images (possibly altered or broken in transit).
IMAGE_SCENARIOS = frozenset({"ok", "slow", "wrong_size", "truncated"})
# An image withheld: a Gemini model answers 200 IMAGE_SAFETY; Imagen sends raiFilteredReason
# entries instead of images (partly_filtered keeps the first image of several).
FILTER_SCENARIOS = frozenset({"image_safety", "rai_filtered", "partly_filtered"})
SCENARIOS = frozenset({*FAILURES, *IMAGE_SCENARIOS, *FILTER_SCENARIOS, "disconnect"})
INSTANT_SCENARIOS = frozenset({
    "resource_exhausted", "quota_exceeded", "permission_denied", "api_disabled",
    "billing_disabled", "unauthenticated",
})  # fmt: skip
