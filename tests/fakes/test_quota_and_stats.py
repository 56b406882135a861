"""Failure mixes, per-key quotas, quota-zero keys and the /_fake/ counters (chaos benchmark)."""

from __future__ import annotations

import asyncio
import random
import re
import sys
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.quota import KeyQuota
from tests.fakes.scenarios import ScenarioControl
from tests.fakes.server import parse_mix

KNOWN = frozenset({"ok", "unavailable", "capacity", "internal", "rate_limited", "quota_zero"})
FLASH = "gemini-2.5-flash-image"
PROMPT = {"contents": [{"role": "user", "parts": [{"text": "a lighthouse"}]}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- failure mixes --------------------------------------------------------------------------------


def test_a_mix_is_drawn_uniformly_and_reproducibly() -> None:
    def draw() -> list[str]:
        scenarios = ScenarioControl(KNOWN)
        scenarios.fail_rate(0.7, ["unavailable", "capacity", "internal"], seed=1)
        return [scenarios.resolve(None, "m", None) for _ in range(3000)]

    picks = draw()
    assert picks == draw()
    counts = Counter(picks)
    assert 2000 < sum(counts[name] for name in ("unavailable", "capacity", "internal")) < 2200
    assert all(600 < counts[name] < 800 for name in ("unavailable", "capacity", "internal"))


def test_a_mix_follows_its_weights() -> None:
    scenarios = ScenarioControl(KNOWN)
    scenarios.fail_rate(1.0, ["unavailable", "capacity"], seed=2, weights=[3, 1])
    counts = Counter(scenarios.resolve(None, "m", None) for _ in range(2000))
    assert 1400 < counts["unavailable"] < 1600
    assert counts["unavailable"] + counts["capacity"] == 2000


def test_a_single_scenario_keeps_its_old_sequence() -> None:
    # Before mixes, one rng draw per request decided: the same seed must give the same failures.
    scenarios = ScenarioControl(KNOWN)
    scenarios.fail_rate(0.5, "unavailable", seed=9)
    rng = random.Random(9)
    expected = ["unavailable" if rng.random() < 0.5 else "ok" for _ in range(200)]
    assert [scenarios.resolve(None, "m", None) for _ in range(200)] == expected


@pytest.mark.parametrize(
    ("names", "weights"),
    [([], None), (["unavailable"], [1, 2]), (["unavailable", "capacity"], [0, 0])],
)
def test_bad_mixes_are_refused(names: list[str], weights: list[float] | None) -> None:
    with pytest.raises(ValueError, match=r"scenario|weight"):
        ScenarioControl(KNOWN).fail_rate(0.5, names, weights=weights)


def test_parse_mix() -> None:
    assert parse_mix("unavailable") == (["unavailable"], None)
    assert parse_mix("a, b,c,") == (["a", "b", "c"], None)
    assert parse_mix("a:3,b") == (["a", "b"], [3.0, 1.0])


# --- per-key quota ------------------------------------------------------------------------------


def test_quota_grants_up_to_the_limit_then_says_when_it_fits() -> None:
    clock = Clock()
    quota = KeyQuota(3, clock=clock)
    assert [quota.admit("k") for _ in range(2)] == [None, None]
    clock.now += 10
    assert quota.admit("k") is None
    refusal = quota.admit("k")
    assert refusal is not None
    assert (refusal.limit, refusal.used, refusal.requested) == (3, 3, 1)
    assert refusal.retry_after == pytest.approx(50.0)  # the first two grants expire at +60 s
    assert quota.admit("other") is None  # keys are counted apart
    clock.now += 50
    assert quota.admit("k") is None
    assert quota.admit("k") is None
    assert quota.admit("k") is not None  # the grant at +10 s is still in the window


def test_quota_counts_images_and_refusals_do_not_count() -> None:
    clock = Clock()
    quota = KeyQuota(4, clock=clock)
    assert quota.admit("k", 3) is None
    refusal = quota.admit("k", 2)
    assert refusal is not None and refusal.retry_after == pytest.approx(60.0)
    assert quota.admit("k", 1) is None  # the refused 2 were not booked
    big = quota.admit("k", 5)
    assert big is not None and big.retry_after == 60.0  # more than the limit never fits


def test_zero_limit_refuses_everything() -> None:
    refusal = KeyQuota(0).admit("k")
    assert refusal is not None and refusal.limit == 0


def test_quota_rules_come_before_scripts_and_are_counted() -> None:
    scenarios = ScenarioControl(KNOWN)
    scenarios.limit_keys(1)
    scenarios.quota_zero_keys("free")
    scenarios.script("unavailable", "unavailable", "unavailable")
    picks = [scenarios.resolve(None, "m", key) for key in ("free", "paid", "paid")]
    assert picks == ["quota_zero", "unavailable", "rate_limited"]
    assert scenarios.resolve("internal", "m", "paid") == "internal"  # the header still wins
    assert scenarios.rate_limited_429 == 1
    assert scenarios.by_key == {"free": 1, "paid": 3}
    scenarios.reset_counts()
    assert (scenarios.rate_limited_429, scenarios.by_key, scenarios.counts) == (0, {}, {})
    assert scenarios.resolve(None, "m", "other") == "unavailable"  # refusals used no script
    scenarios.clear()
    assert [scenarios.resolve(None, "m", key) for key in ("free", "paid")] == ["ok", "ok"]


# --- in the fakes, over HTTP ----------------------------------------------------------------------


async def gemini_call(http: aiohttp.ClientSession, fake: FakeGemini, key: str) -> tuple[int, Any]:
    url = f"{fake.base_url}/v1beta/models/{FLASH}:generateContent"
    async with http.post(url, json=PROMPT, headers={"x-goog-api-key": key}) as response:
        return response.status, orjson.loads(await response.read())


async def stats(http: aiohttp.ClientSession, base_url: str) -> dict[str, Any]:
    async with http.get(f"{base_url}/_fake/stats") as response:
        assert response.status == 200
        result: dict[str, Any] = orjson.loads(await response.read())
        return result


async def test_gemini_quota_answers_the_real_rate_limit(http: aiohttp.ClientSession) -> None:
    async with FakeGemini(record=False) as fake:
        fake.limit_keys(2)
        statuses = [(await gemini_call(http, fake, "k1"))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        _, body = await gemini_call(http, fake, "k1")
        error = body["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        quota, retry = error["details"][0], error["details"][2]
        assert quota["violations"][0]["quotaValue"] == "2"
        delay = float(retry["retryDelay"].rstrip("s"))
        assert 55 < delay <= 60  # the real wait until the window frees a slot
        assert re.search(r"Please retry in \d+(\.\d+)?s\.$", error["message"])
        assert (await gemini_call(http, fake, "k2"))[0] == 200
        assert await stats(http, fake.base_url) == {
            "requests": 5,
            "by_scenario": {"ok": 3, "rate_limited": 2},
            "by_key": {"k1": 4, "k2": 1},
            "rate_limited_429": 2,
        }


async def test_quota_zero_keys_and_reset(http: aiohttp.ClientSession) -> None:
    async with FakeGemini(record=False) as fake:
        fake.quota_zero_keys("free")
        fake.fail_rate(1.0, ["unavailable", "high_demand"])
        status, body = await gemini_call(http, fake, "free")
        assert status == 429
        assert "limit: 0" in body["error"]["message"]
        assert (await gemini_call(http, fake, "paid"))[0] == 503
        async with http.post(f"{fake.base_url}/_fake/reset") as response:
            assert response.status == 200
        assert await stats(http, fake.base_url) == {
            "requests": 0,
            "by_scenario": {},
            "by_key": {},
            "rate_limited_429": 0,
        }


async def test_openai_quota_counts_images_and_stats_beat_the_catch_all(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeOpenAI(record=False) as fake:
        fake.limit_keys(3)
        fake.quota_zero_keys("free")
        url = f"{fake.base_url}/v1/images/generations"

        async def call(key: str, n: int) -> tuple[int, dict[str, Any], str | None]:
            body = {"model": "gpt-image-1-mini", "prompt": "a fox", "n": n, "quality": "low"}
            headers = {"Authorization": f"Bearer {key}"}
            async with http.post(url, json=body, headers=headers) as response:
                doc = orjson.loads(await response.read())
                return response.status, doc, response.headers.get("retry-after")

        assert (await call("k", 2))[0] == 200
        status, doc, retry_after = await call("k", 2)
        assert (status, doc["error"]["code"]) == (429, "rate_limit_exceeded")
        assert "Limit 3, Used 2, Requested 2." in doc["error"]["message"]
        assert retry_after == "60"
        assert (await call("k", 1))[0] == 200
        status, doc, _ = await call("free", 1)
        assert (status, doc["error"]["code"]) == (429, "insufficient_quota")
        counted = await stats(http, fake.base_url)
        assert counted["rate_limited_429"] == 1
        assert counted["by_scenario"] == {"ok": 2, "rate_limited": 1, "insufficient_quota": 1}


async def test_cli_takes_mix_quota_and_zero_keys(http: aiohttp.ClientSession) -> None:
    argv = ["-m", "tests.fakes.gemini", "--port", "0", "--key-ipm", "1"]
    argv += ["--quota-zero-keys", "free", "--fail-rate", "0.5", "--fail-scenario", "internal:1,ok"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        base_url = line.removeprefix("listening on ").strip()
        url = f"{base_url}/v1beta/models/{FLASH}:generateContent"
        for key in ("free", "paid", "paid"):
            async with http.post(url, json=PROMPT, headers={"x-goog-api-key": key}) as response:
                await response.read()
        counted = await stats(http, base_url)
        assert counted["requests"] == 3
        assert counted["by_scenario"]["quota_zero"] == 1
        assert counted["rate_limited_429"] == 1
    finally:
        process.terminate()
        await process.wait()
