"""Scenario choice: header, then script, then sticky mode, then random failures, then ok."""

from __future__ import annotations

import pytest

from tests.fakes.scenarios import ScenarioControl, UnknownScenarioError

KNOWN = frozenset({"ok", "slow", "unavailable", "rate_limited", "quota_zero"})


def control() -> ScenarioControl:
    return ScenarioControl(KNOWN)


def test_default_is_ok_and_counted() -> None:
    scenarios = control()
    assert scenarios.resolve(None, "m", "k") == "ok"
    assert scenarios.counts == {"ok": 1}


def test_script_is_consumed_in_order_then_back_to_normal() -> None:
    scenarios = control()
    scenarios.script("unavailable", "rate_limited")
    picks = [scenarios.resolve(None, "m", "k") for _ in range(3)]
    assert picks == ["unavailable", "rate_limited", "ok"]


def test_script_only_matches_its_model_and_key() -> None:
    scenarios = control()
    scenarios.script("unavailable", model="a")
    scenarios.script("rate_limited", key="k2")
    assert scenarios.resolve(None, "b", "k1") == "ok"
    assert scenarios.resolve(None, "b", "k2") == "rate_limited"
    assert scenarios.resolve(None, "a", "k1") == "unavailable"
    assert scenarios.resolve(None, "a", "k1") == "ok"


def test_header_beats_script_and_does_not_consume_it() -> None:
    scenarios = control()
    scenarios.script("unavailable")
    assert scenarios.resolve("slow", "m", "k") == "slow"
    assert scenarios.resolve(None, "m", "k") == "unavailable"


def test_mode_is_sticky_until_clear_and_script_beats_it() -> None:
    scenarios = control()
    scenarios.set_mode("quota_zero")
    scenarios.script("unavailable")
    assert [scenarios.resolve(None, "m", "k") for _ in range(3)] == [
        "unavailable",
        "quota_zero",
        "quota_zero",
    ]
    scenarios.clear()
    assert scenarios.resolve(None, "m", "k") == "ok"


def test_latest_matching_mode_wins() -> None:
    scenarios = control()
    scenarios.set_mode("quota_zero")
    scenarios.set_mode("unavailable", model="a")
    assert scenarios.resolve(None, "a", None) == "unavailable"
    assert scenarios.resolve(None, "b", None) == "quota_zero"


def test_fail_rate_is_seeded_and_near_its_probability() -> None:
    def draw() -> list[str]:
        scenarios = control()
        scenarios.fail_rate(0.7, "unavailable", seed=1)
        return [scenarios.resolve(None, "m", None) for _ in range(1000)]

    picks = draw()
    assert picks == draw()
    assert 650 < picks.count("unavailable") < 750


def test_model_fail_rate_beats_the_global_one() -> None:
    scenarios = control()
    scenarios.fail_rate(1.0, "unavailable")
    scenarios.fail_rate(0.0, "rate_limited", model="calm")
    assert scenarios.resolve(None, "calm", None) == "ok"
    assert scenarios.resolve(None, "other", None) == "unavailable"


def test_hold_per_model_falls_back_to_default() -> None:
    scenarios = ScenarioControl(KNOWN, hold_seconds=0.5)
    scenarios.hold(2.0, model="slowpoke")
    assert scenarios.hold_for("slowpoke") == 2.0
    assert scenarios.hold_for("other") == 0.5
    scenarios.clear()
    assert scenarios.hold_for("slowpoke") == 0.5


def test_unknown_names_are_refused() -> None:
    scenarios = control()
    with pytest.raises(UnknownScenarioError):
        scenarios.script("nope")
    with pytest.raises(UnknownScenarioError):
        scenarios.resolve("nope", None, None)
    with pytest.raises(ValueError, match="probability"):
        scenarios.fail_rate(1.5, "unavailable")
