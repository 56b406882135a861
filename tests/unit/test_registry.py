"""Provider kinds are imported on use; a missing optional extra is a config error naming it."""

from __future__ import annotations

import sys

import pytest

from imagegate.core.errors import ConfigError
from imagegate.providers import registry


def test_every_registered_kind_imports_and_names_itself() -> None:
    for kind in registry.KINDS:
        assert registry.provider_class(kind).kind == kind


def test_a_missing_extra_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "imagegate.providers.vertex", raising=False)
    monkeypatch.delitem(sys.modules, "imagegate.providers.vertex_auth", raising=False)
    monkeypatch.setitem(sys.modules, "google.auth", None)  # as if google-auth were absent
    with pytest.raises(ConfigError) as caught:
        registry.provider_class("vertex")
    assert "pip install 'imagegate[vertex]'" in caught.value.problems[0]
