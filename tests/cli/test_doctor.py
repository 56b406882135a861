"""`imagegate doctor`: each failure mode of the fakes and the simulator gets its check and its fix.

Most tests run `diagnose` against fakes on the test's own loop; the CLI runs its own
`asyncio.run`, so the CLI tests use the simulator or fakes served from a thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
import yaml
from typer.testing import CliRunner

from imagegate.cli.main import app
from imagegate.config.loader import parse_settings
from imagegate.core.deployment import Capabilities, Deployment
from imagegate.core.geometry import Size
from imagegate.core.request import ImageRequest
from imagegate.doctor import (
    ENDPOINT_AND_MODEL,
    KEY_AND_BILLING,
    PARAMETER_SURVIVAL,
    QUOTA,
    Check,
    DeploymentReport,
    diagnose,
    exit_status,
    ignored_setting,
    survival_request,
    to_json,
)
from imagegate.providers import gemini as gemini_provider
from imagegate.providers import openai as openai_provider
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeUpstream

GEMINI_KEY, OTHER_GEMINI_KEY, OPENAI_KEY = "gm-doctor-key-1", "gm-doctor-key-2", "sk-doctor-key"
runner = CliRunner()


@pytest.fixture(autouse=True)
def upstream_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCTOR_GEMINI_KEY", GEMINI_KEY)
    monkeypatch.setenv("DOCTOR_GEMINI_KEY_2", OTHER_GEMINI_KEY)
    monkeypatch.setenv("DOCTOR_OPENAI_KEY", OPENAI_KEY)


@pytest_asyncio.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(keys={GEMINI_KEY}) as fake:
        yield fake


@pytest_asyncio.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(keys={OPENAI_KEY}) as fake:
        yield fake


def one_deployment(kind: str, base_url: str, model: str, keys: list[str]) -> dict[str, Any]:
    return {
        "providers": {"up": {"kind": kind, "base_url": base_url, "keys": keys}},
        "deployments": {"dep": {"provider": "up", "model": model}},
        "routes": {"image": ["dep"]},
    }


def gemini_config(
    base_url: str, model: str = "gemini-2.5-flash-image", keys: tuple[str, ...] = ()
) -> dict[str, Any]:
    return one_deployment(
        "gemini", f"{base_url}/v1beta", model, list(keys or ("DOCTOR_GEMINI_KEY",))
    )


def openai_config(base_url: str, model: str = "gpt-image-1.5") -> dict[str, Any]:
    return one_deployment("openai", f"{base_url}/v1", model, ["DOCTOR_OPENAI_KEY"])


def sim_config(*models: str) -> dict[str, Any]:
    return {
        "providers": {"sim": {"kind": "simulator"}},
        "deployments": {model: {"provider": "sim", "model": model} for model in models},
        "routes": {"image": list(models)},
    }


async def doctor(config: dict[str, Any], **options: Any) -> DeploymentReport:
    reports = await diagnose(parse_settings(config, source="test"), **options)
    assert len(reports) == 1
    assert GEMINI_KEY not in to_json(reports) and OPENAI_KEY not in to_json(reports)
    return reports[0]


def check(report: DeploymentReport, name: str) -> Check:
    return next(c for c in report.checks if c.name == name)


def first_failure(report: DeploymentReport) -> Check:
    return next(c for c in report.checks if c.ok is False)


def states(report: DeploymentReport) -> dict[str, bool | None]:
    return {c.name: c.ok for c in report.checks if c.name != KEY_AND_BILLING}


# --- what is asked, and what counts as ignored (pure) -------------------------------------------


@pytest.mark.parametrize(
    ("caps", "asked"),
    [
        (gemini_provider.capabilities_for("gemini-3.1-flash-image"), ("16:9", "2K", None)),
        (gemini_provider.capabilities_for("gemini-2.5-flash-image"), ("16:9", None, None)),
        (openai_provider.capabilities_for("gpt-image-1.5"), (None, None, Size(1536, 1024))),
        (openai_provider.capabilities_for("gpt-image-2"), ("16:9", "2K", None)),
    ],
)
def test_the_parameter_check_asks_what_the_capabilities_offer(
    caps: Capabilities, asked: tuple[str | None, str | None, Size | None]
) -> None:
    request = survival_request(caps, Deployment("d", "p", "k", "m", "http://x"))
    assert request is not None
    assert (request.aspect_ratio, request.resolution, request.size) == asked


def test_a_1k_image_for_a_2k_request_shows_the_resolution_was_ignored() -> None:
    wide_2k = ImageRequest("p", "m", aspect_ratio="16:9", resolution="2K")
    assert ignored_setting(wide_2k, Size(2688, 1536)) is None
    assert ignored_setting(wide_2k, Size(2048, 1152)) is None
    assert ignored_setting(wide_2k, Size(1344, 768)) == (
        "the resolution 2K (long side 1344 px, a 1K image's)"
    )
    exact = ImageRequest("p", "m", size=Size(1536, 1024))
    assert ignored_setting(exact, Size(1024, 1024)) == "the size 1536x1024"


# --- healthy deployments ---------------------------------------------------------------------


async def test_a_healthy_gemini_deployment_passes_and_keeps_16_9_at_2k(gemini: FakeGemini) -> None:
    plans: list[dict[str, int]] = []
    report = await doctor(
        gemini_config(gemini.base_url, "gemini-3-pro-image-preview"), announce=plans.append
    )
    assert report.ok and exit_status([report]) == 0
    assert plans == [{"dep": 2}]  # announced before calling: one per key, one for parameters
    assert all(c.ok for c in report.checks), report.checks
    assert check(report, PARAMETER_SURVIVAL).detail == "asked for 16:9 at 2K, got 2688x1536"
    assert "no limits configured" in check(report, QUOTA).detail
    assert len(gemini.requests) == 2
    sent = gemini.requests[-1].json
    assert sent is not None
    assert sent["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}


async def test_a_model_without_2k_is_asked_16_9_at_its_default(gemini: FakeGemini) -> None:
    report = await doctor(gemini_config(gemini.base_url, "gemini-2.5-flash-image"))
    assert report.ok
    assert check(report, PARAMETER_SURVIVAL).detail == (
        "asked for 16:9 at the default resolution, got 1344x768"
    )


async def test_a_fixed_size_openai_model_must_return_the_landscape_size_exactly(
    openai_fake: FakeOpenAI,
) -> None:
    report = await doctor(openai_config(openai_fake.base_url))
    assert report.ok, report.checks
    assert check(report, PARAMETER_SURVIVAL).detail == "asked for exactly 1536x1024, got 1536x1024"
    probe, survival = (r.json or {} for r in openai_fake.requests)
    assert (probe["size"], probe["quality"]) == ("1024x1024", "low")  # the cheapest probe
    assert survival["size"] == "1536x1024"


async def test_each_key_of_a_pool_is_probed_and_only_the_bad_one_is_named(
    gemini: FakeGemini,
) -> None:
    config = gemini_config(gemini.base_url, keys=("DOCTOR_GEMINI_KEY_2", "DOCTOR_GEMINI_KEY"))
    report = await doctor(config)
    bad, good = (c for c in report.checks if c.name == KEY_AND_BILLING)
    assert bad.ok is False and bad.detail.startswith("up:DOCTOR_GEMINI_KEY_2: rejected")
    assert bad.fix is not None and "not valid" in bad.fix
    assert good.ok is True and good.detail == "up:DOCTOR_GEMINI_KEY: accepted"
    assert states(report) == {ENDPOINT_AND_MODEL: True, PARAMETER_SURVIVAL: True, QUOTA: True}
    assert not report.ok and exit_status([report]) == 1
    assert gemini.requests[-1].headers["x-goog-api-key"] == GEMINI_KEY  # parameters: a good key


# --- one failure mode each -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "failed", "fix_fragment", "quota"),
    [
        ("bad_key", KEY_AND_BILLING, "not valid", None),
        ("quota_zero", KEY_AND_BILLING, "enable billing", False),
        ("billing", KEY_AND_BILLING, "enable billing", None),
        ("permission_denied", KEY_AND_BILLING, "enable the Generative Language API", None),
        ("unavailable", ENDPOINT_AND_MODEL, "not your configuration", None),
        ("capacity", ENDPOINT_AND_MODEL, "not your configuration", None),
        ("truncated", ENDPOINT_AND_MODEL, "not your configuration", None),
        ("rate_limited", QUOTA, "images_per_minute", False),
        ("wrong_size", PARAMETER_SURVIVAL, "ignored", True),
    ],
)
async def test_a_gemini_failure_mode_fails_its_check_with_the_fix(
    gemini: FakeGemini, scenario: str, failed: str, fix_fragment: str, quota: bool | None
) -> None:
    gemini.set_mode(scenario)
    report = await doctor(gemini_config(gemini.base_url, "gemini-3-pro-image-preview"))
    assert exit_status([report]) == 1
    failure = first_failure(report)
    assert failure.name == failed, report.checks
    assert failure.fix is not None and fix_fragment in failure.fix
    if failed in (KEY_AND_BILLING, ENDPOINT_AND_MODEL):  # later checks are meaningless: skipped
        assert check(report, PARAMETER_SURVIVAL).detail.startswith("skipped because")
    assert check(report, QUOTA).ok is quota


async def test_wrong_size_says_what_was_asked_and_what_came_back(gemini: FakeGemini) -> None:
    gemini.set_mode("wrong_size")
    report = await doctor(gemini_config(gemini.base_url, "gemini-3-pro-image-preview"))
    survival = check(report, PARAMETER_SURVIVAL)
    assert survival.detail.startswith("asked for 16:9 at 2K, got 1024x1024")
    assert survival.detail.endswith("the aspect ratio 16:9 (aspect 1.000, not 1.778) was ignored")
    assert survival.fix is not None and "imageConfig" in survival.fix and '"2k"' in survival.fix


async def test_a_rate_limit_reports_the_retry_hint(gemini: FakeGemini) -> None:
    gemini.set_mode("rate_limited")
    report = await doctor(gemini_config(gemini.base_url))
    quota = check(report, QUOTA)
    assert "rate_limited, HTTP 429" in quota.detail and "retry after 2 s" in quota.detail
    assert check(report, KEY_AND_BILLING).ok is True  # a per-minute limit means the key works


async def test_an_unknown_gemini_model_names_the_model_and_the_base_url(gemini: FakeGemini) -> None:
    report = await doctor(gemini_config(gemini.base_url, "gemini-9-imagine"))
    failure = first_failure(report)
    assert failure.name == ENDPOINT_AND_MODEL
    assert failure.fix is not None
    assert "'gemini-9-imagine'" in failure.fix and f"{gemini.base_url}/v1beta" in failure.fix
    assert check(report, KEY_AND_BILLING).ok is True


async def test_an_unreachable_base_url_fails_the_endpoint_check() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = await doctor(gemini_config(f"http://127.0.0.1:{port}"))
    failure = first_failure(report)
    assert failure.name == ENDPOINT_AND_MODEL and failure.detail.startswith("cannot reach")
    assert failure.fix is not None and "check base_url" in failure.fix
    assert check(report, KEY_AND_BILLING).ok is None  # nobody judged the key


@pytest.mark.parametrize(
    ("scenario", "failed", "fix_fragment"),
    [
        ("insufficient_quota", KEY_AND_BILLING, "add credit"),
        ("forbidden", KEY_AND_BILLING, "verified organization"),
        ("wrong_size", PARAMETER_SURVIVAL, "ignored"),
    ],
)
async def test_an_openai_failure_mode_fails_its_check_with_the_fix(
    openai_fake: FakeOpenAI, scenario: str, failed: str, fix_fragment: str
) -> None:
    openai_fake.set_mode(scenario)
    report = await doctor(openai_config(openai_fake.base_url))
    assert exit_status([report]) == 1
    failure = first_failure(report)
    assert failure.name == failed and failure.fix is not None and fix_fragment in failure.fix


async def test_a_wrong_openai_key_is_named_and_its_secret_is_not(
    openai_fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCTOR_OPENAI_KEY", "sk-wrong-secret-value")
    reports = await diagnose(parse_settings(openai_config(openai_fake.base_url), source="test"))
    failure = first_failure(reports[0])
    assert failure.detail.startswith("up:DOCTOR_OPENAI_KEY: rejected (auth, HTTP 401")
    assert failure.fix is not None and "invalid or revoked" in failure.fix
    assert "sk-wrong-secret-value" not in to_json(reports)


async def test_an_unknown_openai_model_names_the_model(openai_fake: FakeOpenAI) -> None:
    report = await doctor(openai_config(openai_fake.base_url, "gpt-image-9"))
    failure = first_failure(report)
    assert failure.name == ENDPOINT_AND_MODEL and failure.fix is not None
    assert "'gpt-image-9'" in failure.fix


@pytest.mark.parametrize(
    ("model", "failed", "detail"),
    [
        ("sim-fail-auth", KEY_AND_BILLING, "rejected (auth, HTTP 401)"),
        ("sim-fail-quota_zero", KEY_AND_BILLING, "no billing behind it"),
        ("sim-fail-not_found", ENDPOINT_AND_MODEL, "'sim-fail-not_found' at simulator://local"),
        ("sim-fail-timeout", ENDPOINT_AND_MODEL, "failing right now"),
        ("sim-fail-rate_limited", QUOTA, "retry after 1 s"),
    ],
)
async def test_a_failing_simulator_fails_the_matching_check(
    model: str, failed: str, detail: str
) -> None:
    report = await doctor(sim_config(model))
    failure = first_failure(report)
    assert failure.name == failed and detail in failure.detail


async def test_skip_parameters_makes_one_call_less() -> None:
    plans: list[dict[str, int]] = []
    report = await doctor(sim_config("sim-image"), check_parameters=False, announce=plans.append)
    assert report.ok and plans == [{"sim-image": 1}]
    assert check(report, PARAMETER_SURVIVAL).detail == "skipped on request"


# --- the command -------------------------------------------------------------------------------


def write_config(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "imagegate.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_cli_healthy_simulator_exits_0_and_prints_a_line_per_check(tmp_path: Path) -> None:
    result = runner.invoke(app, ["doctor", "-c", write_config(tmp_path, sim_config("sim-image"))])
    assert result.exit_code == 0, result.output
    assert "billed as usual: at most 2 (sim-image 2)" in result.output
    for name in (KEY_AND_BILLING, ENDPOINT_AND_MODEL, PARAMETER_SURVIVAL, QUOTA):
        assert f"✓ {name}" in result.output
    assert "asked for 16:9 at 2K, got 2736x1536" in result.output
    assert result.output.rstrip().endswith("1 of 1 deployment(s) healthy")


def test_cli_prints_the_fix_under_a_failed_check_and_exits_1(tmp_path: Path) -> None:
    config = write_config(tmp_path, sim_config("sim-image", "sim-fail-billing"))
    result = runner.invoke(app, ["doctor", "-c", config, "--skip-parameters"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    failed = next(i for i, line in enumerate(lines) if "✗ key and billing" in line)
    assert lines[failed + 1].strip().startswith("fix: simulated billing failure")
    assert "– parameter survival  skipped on request" in result.output
    assert "1 of 2 deployment(s) healthy; failing: sim-fail-billing" in result.output


def test_cli_json_is_the_reports_alone_on_stdout(tmp_path: Path) -> None:
    config = write_config(tmp_path, sim_config("sim-image", "sim-fail-auth"))
    result = runner.invoke(app, ["doctor", "-c", config, "--json", "-d", "sim-fail-auth"])
    assert result.exit_code == 1
    assert "billed as usual" in result.stderr
    (report,) = orjson.loads(result.stdout)
    assert (report["deployment"], report["ok"]) == ("sim-fail-auth", False)
    assert report["checks"][0]["name"] == KEY_AND_BILLING and report["checks"][0]["ok"] is False


def test_cli_unknown_deployment_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, sim_config("sim-image"))
    result = runner.invoke(app, ["doctor", "-c", config, "-d", "sim-imag"])
    assert result.exit_code == 2
    assert "no deployment named 'sim-imag' (defined: sim-image)" in result.output


@contextmanager
def served_from_a_thread(fake: FakeUpstream) -> Iterator[str]:
    """Serve the fake on its own loop in a thread: the command runs its own asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=10)
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def both_upstreams(gemini_url: str, openai_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "google": {
                "kind": "gemini",
                "base_url": f"{gemini_url}/v1beta",
                "keys": ["DOCTOR_GEMINI_KEY"],
            },
            "oa": {"kind": "openai", "base_url": f"{openai_url}/v1", "keys": ["DOCTOR_OPENAI_KEY"]},
        },
        "deployments": {
            "flash": {"provider": "google", "model": "gemini-2.5-flash-image"},
            "gpt": {"provider": "oa", "model": "gpt-image-1.5"},
        },
        "routes": {"image": ["flash", "gpt"]},
    }


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[tuple[FakeGemini, str]]:
    gemini, openai_fake = FakeGemini(keys={GEMINI_KEY}), FakeOpenAI(keys={OPENAI_KEY})
    with served_from_a_thread(gemini) as gemini_url, served_from_a_thread(openai_fake) as oa_url:
        yield gemini, write_config(tmp_path, both_upstreams(gemini_url, oa_url))


def test_cli_against_healthy_fakes_exits_0(upstreams: tuple[FakeGemini, str]) -> None:
    _, config = upstreams
    result = runner.invoke(app, ["doctor", "-c", config])
    assert result.exit_code == 0, result.output
    assert "google:DOCTOR_GEMINI_KEY: accepted" in result.output
    assert "oa:DOCTOR_OPENAI_KEY: accepted" in result.output
    assert "2 of 2 deployment(s) healthy" in result.output
    assert GEMINI_KEY not in result.output and OPENAI_KEY not in result.output


def test_cli_against_a_quota_zero_gemini_key_says_enable_billing_and_exits_1(
    upstreams: tuple[FakeGemini, str],
) -> None:
    gemini, config = upstreams
    gemini.set_mode("quota_zero")
    result = runner.invoke(app, ["doctor", "-c", config])
    assert result.exit_code == 1, result.output
    assert "✗ key and billing     google:DOCTOR_GEMINI_KEY: no billing behind it" in result.output
    assert "enable billing" in result.output
    assert "1 of 2 deployment(s) healthy; failing: flash" in result.output
