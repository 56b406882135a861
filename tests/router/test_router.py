"""The fallback loop decides by failure kind: fall over, stop, or give up at the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagegate.config.loader import parse_settings
from imagegate.core.errors import AllCandidatesFailed, FailureKind, UnsupportedRequest
from imagegate.core.geometry import Size
from imagegate.core.request import ImageRequest
from imagegate.gateway import Gateway


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    deployments = {
        kind: {"provider": "sim", "model": f"sim-fail-{kind}"}
        for kind in ("unavailable", "bad_request", "safety", "quota_zero", "timeout")
    }
    deployments["ok"] = {"provider": "sim", "model": "sim-image"}
    deployments["slow"] = {"provider": "sim", "model": "sim-image", "options": {"latency_ms": 300}}
    settings = parse_settings(
        {
            "server": {"data_dir": str(tmp_path)},
            "providers": {"sim": {"kind": "simulator"}},
            "deployments": deployments,
            "routes": {
                "falls-over": ["unavailable", "quota_zero", "timeout", "ok"],
                "bad-stops": ["bad_request", "ok"],
                "safety-stops": ["safety", "ok"],
                "slow": ["slow", "ok"],
                "slow-only": ["slow"],
                "dead": ["unavailable"],
                "dead-once": {"candidates": ["unavailable"], "retries": {"unavailable": 1}},
                "open-then-dead": {
                    "candidates": ["ok", "unavailable"],
                    "retries": {"unavailable": 0},
                },
            },
        },
        source="test",
    )
    made = Gateway.create(settings)
    yield made
    await made.aclose()


def request(model: str, **fields: object) -> ImageRequest:
    return ImageRequest(prompt="a fox", model=model, **fields)  # type: ignore[arg-type]


async def test_retryable_kinds_fall_over_in_order(gateway: Gateway) -> None:
    result = await gateway.generate(request("falls-over", n=3))
    assert result.deployment == "ok" and len(result.images) == 3
    assert [(a.deployment, a.kind) for a in result.attempts] == [
        ("unavailable", FailureKind.UNAVAILABLE),
        ("quota_zero", FailureKind.QUOTA_ZERO),
        ("timeout", FailureKind.TIMEOUT),
        ("ok", None),
    ]
    await result.aclose()


@pytest.mark.parametrize(
    ("route", "kind"),
    [("bad-stops", FailureKind.BAD_REQUEST), ("safety-stops", FailureKind.SAFETY)],
)
async def test_kinds_another_upstream_cannot_fix_stop_at_once(
    gateway: Gateway, route: str, kind: FailureKind
) -> None:
    with pytest.raises(AllCandidatesFailed) as caught:
        await gateway.generate(request(route))
    assert caught.value.final.kind is kind
    assert len(caught.value.attempts) == 1  # the second, healthy candidate was not asked


async def test_last_candidate_retries_unavailable_with_backoff(gateway: Gateway) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    gateway.router.sleep = record
    with pytest.raises(AllCandidatesFailed) as caught:
        await gateway.generate(request("dead"))
    assert [a.kind for a in caught.value.attempts] == [FailureKind.UNAVAILABLE] * 5
    assert waits == [0.5, 1.0, 2.0, 4.0]


async def test_a_route_sets_the_whole_retry_count(gateway: Gateway) -> None:
    with pytest.raises(AllCandidatesFailed) as caught:
        await gateway.generate(request("dead-once"))
    assert [a.kind for a in caught.value.attempts] == [FailureKind.UNAVAILABLE] * 2


async def test_no_attempt_starts_after_the_deadline(gateway: Gateway) -> None:
    with pytest.raises(AllCandidatesFailed) as caught:
        await gateway.generate(request("dead", deadline=time.monotonic() - 1))
    assert caught.value.attempts == [] and caught.value.final.kind is FailureKind.TIMEOUT


async def test_a_size_no_candidate_can_make_is_refused_before_any_call(
    gateway: Gateway, tmp_path: Path
) -> None:
    settings = parse_settings(
        {
            "server": {"data_dir": str(tmp_path)},
            "providers": {"g": {"kind": "gemini", "keys": ["HOME"]}},  # HOME: any set variable
            "deployments": {"flash": {"provider": "g", "model": "gemini-2.5-flash-image"}},
            "routes": {"flash": ["flash"]},
        },
        source="test",
    )
    strict = Gateway.create(settings)
    try:
        with pytest.raises(UnsupportedRequest) as caught:
            await strict.generate(
                request("flash", size=Size(1024, 4096))
            )  # 1:4 is not on 2.5 Flash
        assert caught.value.param == "size" and "21:9" in caught.value.message
    finally:
        await strict.aclose()


async def test_no_attempt_starts_that_cannot_finish_before_the_deadline(gateway: Gateway) -> None:
    for _ in range(10):  # learn the slow deployment's typical latency (300 ms)
        await (await gateway.generate(request("slow-only"))).aclose()
    result = await gateway.generate(request("slow", deadline=time.monotonic() + 0.2))
    assert result.deployment == "ok"
    assert [a.deployment for a in result.attempts] == ["ok"]  # the slow one was never started
    assert any("typical latency" in note for note in result.notes)
    await result.aclose()


async def test_an_open_breaker_deployment_is_the_last_resort_not_skipped_for_good(
    gateway: Gateway,
) -> None:
    for _ in range(gateway.health.breaker("ok").policy.consecutive_failures):
        gateway.health.record("ok", FailureKind.UNAVAILABLE, 0.1)  # "ok" looks broken...
    result = await gateway.generate(request("open-then-dead"))
    # ...so the healthy-looking "unavailable" went first, failed, and "ok" was tried after all.
    assert [a.deployment for a in result.attempts] == ["unavailable", "ok"]
    assert any("last resort" in note for note in result.notes)
    await result.aclose()


async def test_latency_is_the_upstream_calls_not_the_wait_for_quota(tmp_path: Path) -> None:
    settings = parse_settings(
        {
            "server": {"data_dir": str(tmp_path)},
            "providers": {"sim": {"kind": "simulator"}},
            "deployments": {
                "one": {
                    "provider": "sim",
                    "model": "sim-image",
                    "limits": {"concurrency": 1},
                    "options": {"latency_ms": 50},
                }
            },
            "routes": {"one": ["one"]},
        },
        source="test",
    )
    made = Gateway.create(settings)
    try:
        # Ten at once through a concurrency of one: the last waits ~450 ms for its turn.
        results = await asyncio.gather(*(made.generate(request("one")) for _ in range(10)))
        for result in results:
            await result.aclose()
        slowest = made.health.latency_percentile("one", 99)
        assert slowest is not None and slowest < 0.2
    finally:
        await made.aclose()
