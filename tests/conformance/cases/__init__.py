"""Every provider's conformance cases. A provider module is listed here once it exists."""

from __future__ import annotations

import importlib
import importlib.util

from tests.conformance.case import ProviderCase

MODULES = (
    "gemini",
    "openai",
    "vertex",
    "azure_openai",
    "openai_compatible",
    "bfl",
    "fal",
    "replicate",
    "diffusers_local",
)


def all_cases() -> list[ProviderCase]:
    cases: list[ProviderCase] = []
    for name in MODULES:
        if importlib.util.find_spec(f"tests.conformance.cases.{name}") is None:
            continue  # not written yet  TODO(lead): remove once every provider has landed
        module = importlib.import_module(f"tests.conformance.cases.{name}")
        cases.extend(module.CASES)
    return cases
