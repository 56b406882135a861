"""The `imagegate` command: init, check-config, generate, --version."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from imagegate import __version__
from imagegate.cli.main import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_init_writes_a_valid_commented_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "imagegate.yaml"
    assert runner.invoke(app, ["init", str(target)]).exit_code == 0
    text = target.read_text()
    assert "# " in text and "kind: simulator" in text
    assert runner.invoke(app, ["init", str(target)]).exit_code == 1
    checked = runner.invoke(app, ["check-config", str(target)])
    assert checked.exit_code == 0, checked.output
    assert "sim-image → sim-default" in checked.output


def test_check_config_explains_every_mistake_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MISSING_GEMINI_KEY", raising=False)
    config = tmp_path / "broken.yaml"
    config.write_text(
        "providers:\n"
        "  google: {kind: gemini, keys: [MISSING_GEMINI_KEY]}\n"
        "deployments:\n"
        "  flash: {provider: gogle, model: gemini-2.5-flash-image}\n"
        "routes:\n"
        "  image: [flash, nano]\n"
    )
    result = runner.invoke(app, ["check-config", str(config)])
    assert result.exit_code == 2
    assert (
        "providers.google.keys[0]: environment variable MISSING_GEMINI_KEY is not set"
        in result.output
    )
    assert "deployments.flash.provider: no provider named 'gogle'" in result.output
    assert "routes.image.candidates[1]: no deployment named 'nano'" in result.output


def test_generate_writes_an_image_of_the_asked_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.png"
    result = runner.invoke(
        app,
        [
            "generate",
            "a red bicycle",
            "--model",
            "sim-image",
            "--size",
            "1536x1024",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert (image.format, image.size) == ("PNG", (1536, 1024))


def test_generate_reports_an_unknown_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["generate", "x", "--model", "nope"])
    assert result.exit_code == 1 and "nope" in result.output
