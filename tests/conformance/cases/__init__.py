"""Every provider's conformance cases: one module per provider kind, each defining CASES."""

from __future__ import annotations

import importlib

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
        module = importlib.import_module(f"tests.conformance.cases.{name}")
        cases.extend(module.CASES)
    return cases
