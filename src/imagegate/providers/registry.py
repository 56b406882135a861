"""Provider kinds → import strings. A module is imported only when a deployment uses its kind,
so heavy optional backends stay behind their extras."""

from __future__ import annotations

import importlib
from typing import cast

from imagegate.core.errors import ConfigError
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


# Kinds whose libraries come with an optional extra: `pip install 'imagegate[<extra>]'`.
EXTRAS: dict[str, str] = {"vertex": "vertex"}


def provider_class(kind: str) -> type[Provider]:
    """The provider class of `kind`; a ConfigError naming the extra when its library is missing."""
    module_name, _, attr = KINDS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if kind not in EXTRAS:
            raise
        raise ConfigError(
            [
                f"providers of kind {kind!r} need the optional extra: pip install"
                f" 'imagegate[{EXTRAS[kind]}]' ({exc.name or exc} is not installed)"
            ]
        ) from exc
    return cast("type[Provider]", getattr(module, attr))
