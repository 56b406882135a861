"""Vertex AI against FakeVertex (a Gemini model, Imagen generate, Imagen edit with a mask), with
google-auth's real service-account flow against the fake's token endpoint; and Imagen on the
Gemini Developer API's legacy :predict against FakeGemini.
"""

from __future__ import annotations

import base64
import os

import orjson

from imagegate.core.errors import FailureKind
from tests.conformance.case import ProviderCase, Sent
from tests.conformance.cases.gemini import sent_gemini
from tests.fakes.gemini import FakeGemini
from tests.fakes.server import FakeUpstream
from tests.fakes.vertex import FakeVertex, service_account_info

# The service account JSON goes in an environment variable (option service_account_env): its
# token_uri must name the fake's port, known only once the fake has started.
SERVICE_ACCOUNT_ENV = "IMAGEGATE_CONFORMANCE_VERTEX_SA"

VERTEX_FAILURES = {
    "ok": None,
    "resource_exhausted": FailureKind.CAPACITY,  # Dynamic Shared Quota: no QuotaFailure
    "quota_exceeded": FailureKind.RATE_LIMITED,
    "permission_denied": FailureKind.AUTH,
    "api_disabled": FailureKind.AUTH,
    "billing_disabled": FailureKind.BILLING,
    "unauthenticated": FailureKind.AUTH,
    "unavailable": FailureKind.UNAVAILABLE,
    "internal": FailureKind.UNAVAILABLE,
    "deadline": FailureKind.TIMEOUT,
    "image_safety": FailureKind.SAFETY,
    "bad_gateway": FailureKind.UNAVAILABLE,
    "cf_524": FailureKind.TIMEOUT,
    "truncated": FailureKind.UNAVAILABLE,
    "disconnect": FailureKind.UNAVAILABLE,
}
IMAGEN_FAILURES = {
    **VERTEX_FAILURES,
    "imagen_blocked": FailureKind.SAFETY,  # 400 "The response is blocked" (58061214)
    "rai_filtered": FailureKind.SAFETY,  # every image came back as raiFilteredReason
}
DEVELOPER_IMAGEN_FAILURES = {
    "ok": None,
    "jpeg_output": None,
    "rate_limited": FailureKind.RATE_LIMITED,
    "quota_zero": FailureKind.QUOTA_ZERO,
    "capacity": FailureKind.CAPACITY,
    "unavailable": FailureKind.UNAVAILABLE,
    "internal": FailureKind.UNAVAILABLE,
    "deadline": FailureKind.TIMEOUT,
    "billing": FailureKind.BILLING,
    "permission_denied": FailureKind.AUTH,
    "bad_key": FailureKind.AUTH,
    "cf_524": FailureKind.TIMEOUT,
    "image_safety": FailureKind.SAFETY,
    "text_only": FailureKind.EMPTY,
    "truncated": FailureKind.UNAVAILABLE,
    "disconnect": FailureKind.UNAVAILABLE,
}


def use_fake_token_endpoint(fake: FakeUpstream) -> None:
    info = service_account_info(f"{fake.base_url}/token", project="conformance-project")
    os.environ[SERVICE_ACCOUNT_ENV] = orjson.dumps(info).decode()


def sent_imagen(fake: FakeUpstream) -> list[Sent]:
    """Every :predict call: the RAW reference is the input image, the MASK one the mask."""
    calls = []
    for record in fake.requests:
        if not record.path.endswith(":predict") or record.json is None:
            continue
        instance = record.json["instances"][0]
        parameters = record.json.get("parameters", {})
        refs = {
            ref["referenceType"]: base64.b64decode(ref["referenceImage"]["bytesBase64Encoded"])
            for ref in instance.get("referenceImages", [])
            if "referenceImage" in ref
        }
        raw = refs.get("REFERENCE_TYPE_RAW")
        calls.append(
            Sent(
                prompt=instance["prompt"],
                n=int(parameters.get("sampleCount", 1)),
                seed=parameters.get("seed"),
                images=() if raw is None else (raw,),
                mask=refs.get("REFERENCE_TYPE_MASK"),
                mask_convention="white",
                extra=parameters,
            )
        )
    return calls


def vertex_case(
    model: str, location: str, scenarios: dict[str, FailureKind | None]
) -> ProviderCase:
    return ProviderCase(
        id=f"vertex/{model}",
        kind="vertex",
        model=model,
        make_fake=FakeVertex,
        sent=sent_imagen if model.startswith("imagen-") else sent_gemini,
        key=None,  # a service account, not an API key
        options={
            "project": "conformance-project",
            "location": location,
            "service_account_env": SERVICE_ACCOUNT_ENV,
        },
        scenarios=scenarios,
        prepare=use_fake_token_endpoint,
    )


CASES = [
    vertex_case("gemini-3-pro-image-preview", "global", VERTEX_FAILURES),
    vertex_case("imagen-4.0-generate-001", "us-central1", IMAGEN_FAILURES),
    vertex_case("imagen-3.0-capability-001", "us-central1", IMAGEN_FAILURES),
    ProviderCase(
        id="gemini/imagen-4.0-generate-001",
        kind="gemini",
        model="imagen-4.0-generate-001",
        make_fake=FakeGemini,
        sent=sent_imagen,
        base_path="/v1beta",
        scenarios=DEVELOPER_IMAGEN_FAILURES,
    ),
]
