"""Configuration mistakes are reported all at once, each with the path of its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegate.config.loader import load_settings, parse_settings
from imagegate.core.errors import ConfigError
from imagegate.gateway import validate


def problems_of(config: dict[str, object]) -> list[str]:
    try:
        settings = parse_settings(config, source="t")
    except ConfigError as exc:
        return exc.problems
    return validate(settings)


def test_embedded_defaults_are_valid() -> None:
    assert validate(load_settings(None)) == []


def test_unknown_fields_name_their_path() -> None:
    problems = problems_of(
        {"server": {"prot": 80}, "providers": {"p": {"kind": "simulator", "kee": []}}}
    )
    assert "server.prot: unknown field" in problems
    assert "providers.p.kee: unknown field" in problems


def test_dangling_references_and_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    problems = problems_of(
        {
            "providers": {"g": {"kind": "gemini", "keys": ["NOPE_KEY"]}, "x": {"kind": "dalle"}},
            "deployments": {"d": {"provider": "gg", "model": "m"}},
            "routes": {"r": ["d", "missing", "d"]},
        }
    )
    assert "providers.g.keys[0]: environment variable NOPE_KEY is not set" in problems
    assert any(p.startswith("providers.x.kind: unknown kind 'dalle'") for p in problems)
    assert any(p.startswith("deployments.d.provider: no provider named 'gg'") for p in problems)
    assert any(
        p.startswith("routes.r.candidates[1]: no deployment named 'missing'") for p in problems
    )
    assert "routes.r.candidates[2]: duplicate entry 'd'" in problems


def test_inline_secret_is_refused() -> None:
    problems = problems_of({"providers": {"g": {"kind": "gemini", "keys": ["sk-abc123-xyz!"]}}})
    assert any("providers.g.keys" in p and "environment variable name" in p for p in problems)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("server:\n  port: [8080\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(file)
    assert "line" in caught.value.problems[0] and "bad.yaml" in caught.value.problems[0]
