"""One route per provider for test_every_provider.py: the fake, model and options of each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.cases.diffusers_local import make_fake as local_pipeline
from tests.conformance.cases.vertex import SERVICE_ACCOUNT_ENV, use_fake_token_endpoint
from tests.fakes.aggregator import FakeAggregator
from tests.fakes.azure_openai import FakeAzureOpenAI
from tests.fakes.bfl import FakeBfl
from tests.fakes.fal import FakeFal
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.replicate import FakeReplicate
from tests.fakes.server import FakeUpstream
from tests.fakes.tiny_pipeline import SHARED_FOLDER
from tests.fakes.vertex import FakeVertex


@dataclass(frozen=True)
class Entry:
    id: str
    kind: str
    model: str
    make_fake: Callable[[], FakeUpstream]
    base_path: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    provider_options: dict[str, Any] = field(default_factory=dict)
    wide: str = "1536x1024"  # a wide size it makes, for the mismatch check
    keyless: bool = False
    makes_3_2: bool = True  # Imagen has no 3:2: the same request is refused naming `size`
    # a local pipeline has no upstream that could answer with the wrong size
    can_misbehave: bool = True
    prepare: Callable[[FakeUpstream], None] | None = None


ENTRIES = [
    Entry("openai", "openai", "gpt-image-1.5", FakeOpenAI, base_path="/v1"),
    Entry(
        "gemini",
        "gemini",
        "gemini-3.1-flash-image",
        FakeGemini,
        base_path="/v1beta",
        wide="1344x768",
    ),
    Entry("bfl", "bfl", "flux-2-pro", FakeBfl, options={"poll_seconds": 0.05}),
    Entry(
        "fal",
        "fal",
        "fal-ai/flux-2-pro",
        FakeFal,
        options={"poll_seconds": 0.02, "poll_max_seconds": 0.05},
    ),
    Entry(
        "azure-openai",
        "azure-openai",
        "gpt-image-1.5",
        lambda: FakeAzureOpenAI(deployments={"images-prod": "gpt-image-1.5"}),
        options={"azure_deployment": "images-prod"},
    ),
    Entry(
        "openai-compatible",
        "openai-compatible",
        "gpt-image-1.5",
        FakeAggregator,
        base_path="/v1",
    ),
    Entry(
        "vertex",
        "vertex",
        "gemini-3.1-flash-image",
        FakeVertex,
        provider_options={
            "project": "e2e-project",
            "location": "us-central1",
            "service_account_env": SERVICE_ACCOUNT_ENV,
        },
        keyless=True,
        prepare=use_fake_token_endpoint,
        wide="1344x768",
    ),
    Entry(
        "vertex-imagen",
        "vertex",
        "imagen-4.0-generate-001",
        FakeVertex,
        provider_options={"project": "e2e-project", "service_account_env": SERVICE_ACCOUNT_ENV},
        keyless=True,
        prepare=use_fake_token_endpoint,
        wide="1408x792",
        makes_3_2=False,
    ),
    Entry(
        "replicate",
        "replicate",
        "black-forest-labs/flux-2-pro",
        FakeReplicate,
        base_path="/v1",
        options={"poll_seconds": 0.01},
    ),
    Entry(
        "replicate-num-outputs",
        "replicate",
        "black-forest-labs/flux-schnell",
        FakeReplicate,
        base_path="/v1",
        options={"poll_seconds": 0.01},
    ),
    Entry(
        "local",
        "local",
        str(SHARED_FOLDER),  # the tiny random-weight pipeline, built once per test process
        local_pipeline,
        options={"steps": 2, "max_edge": 1536},
        keyless=True,
        can_misbehave=False,
    ),
]
