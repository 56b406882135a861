"""Provider kinds → import strings. A module is imported only when a deployment uses its kind,
so heavy optional backends stay behind their extras."""

from __future__ import annotations

import importlib
from typing import cast

from imagegate.providers.base import Provider

KINDS: dict[str, str] = {
    "simulator": "imagegate.providers.simulator:SimulatorProvider",
    "gemini": "imagegate.providers.gemini:GeminiProvider",
    "openai": "imagegate.providers.openai:OpenAIProvider",
    "local": "imagegate.providers.diffusers_local:LocalDiffusersProvider",
    "vertex": "imagegate.providers.vertex:VertexProvider",
    "azure-openai": "imagegate.providers.azure_openai:AzureOpenAIProvider",
    "openai-compatible": "imagegate.providers.openai_compatible:OpenAICompatibleProvider",
    "fal": "imagegate.providers.fal:FalProvider",
    "replicate": "imagegate.providers.replicate:ReplicateProvider",
    "bfl": "imagegate.providers.bfl:BflProvider",
}


def provider_class(kind: str) -> type[Provider]:
    module_name, _, attr = KINDS[kind].partition(":")
    module = importlib.import_module(module_name)
    return cast("type[Provider]", getattr(module, attr))
