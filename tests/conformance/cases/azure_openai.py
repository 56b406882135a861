"""Azure OpenAI against FakeAzureOpenAI: a gpt-image-1.5 model behind an Azure deployment with
its own name, reached with `api-key` auth and the default api-version."""

from __future__ import annotations

from imagegate.core.errors import FailureKind
from imagegate.providers.azure_openai import DEFAULT_API_VERSION
from tests.conformance.case import ProviderCase, Sent
from tests.conformance.cases.openai import sent_openai
from tests.fakes.azure_openai import FakeAzureOpenAI
from tests.fakes.server import FakeUpstream, RecordedRequest

DEPLOYMENT = "images-prod-eastus"

SCENARIOS = {
    "ok": None,
    "rate_limited": FailureKind.RATE_LIMITED,
    "rate_limited_no_header": FailureKind.RATE_LIMITED,
    "content_filter": FailureKind.SAFETY,
    "content_policy_violation": FailureKind.SAFETY,
    "moderation_blocked": FailureKind.SAFETY,
    "unauthorized": FailureKind.AUTH,
    "forbidden": FailureKind.AUTH,
    "deployment_not_found": FailureKind.NOT_FOUND,
    "server_error": FailureKind.UNAVAILABLE,
    "unavailable": FailureKind.UNAVAILABLE,
    "timeout": FailureKind.TIMEOUT,
    "bad_gateway": FailureKind.UNAVAILABLE,
    "cf_524": FailureKind.TIMEOUT,
    "empty_data": FailureKind.EMPTY,
    "truncated": FailureKind.UNAVAILABLE,
    "disconnect": FailureKind.UNAVAILABLE,
}


def sent_azure(fake: FakeUpstream) -> list[Sent]:
    """OpenAI's calls, only those addressed to the deployment with the api-version sent."""
    calls = []
    for record, sent in zip(_image_calls(fake), sent_openai(fake), strict=True):
        assert f"/openai/deployments/{DEPLOYMENT}/images/" in record.path
        assert record.query.get("api-version") == DEFAULT_API_VERSION
        assert record.headers.get("api-key") == "conformance-key"
        calls.append(sent)
    return calls


def _image_calls(fake: FakeUpstream) -> list[RecordedRequest]:
    return [
        record
        for record in fake.requests
        if (record.path.endswith("/images/generations") and record.json is not None)
        or (record.path.endswith("/images/edits") and record.form)
    ]


CASES = [
    ProviderCase(
        id="azure-openai/gpt-image-1.5",
        kind="azure-openai",
        model="gpt-image-1.5",
        make_fake=lambda: FakeAzureOpenAI(deployments={DEPLOYMENT: "gpt-image-1.5"}),
        sent=sent_azure,
        options={"azure_deployment": DEPLOYMENT},
        scenarios=SCENARIOS,
    )
]
