"""SIGKILL the gateway during a burst, restart it on the same database: every request the client
saw succeed is booked exactly once, nothing is left pending, and no reservation is left held."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from sqlalchemy import func, select

from imagegate.state.models import RequestRow, SpendRow
from tests.dbfixtures import DatabaseUnderTest
from tests.fakes.openai import FakeOpenAI

SECRET = "ig_crash-test-key"
BURST, SPACING, KILL_AT = 50, 0.012, 12  # kill once this many answers came back whole


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _serving(config: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from imagegate.cli.main import main; main()",
        "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await _wait_healthy(port, process)
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_healthy(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                stderr = await process.stderr.read() if process.stderr else b""
                pytest.fail(f"the gateway exited with {process.returncode}: {stderr.decode()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    pytest.fail("the gateway did not become healthy in 30 s")


async def _one(
    session: aiohttp.ClientSession,
    port: int,
    index: int,
    delay: float,
    seen: list[str],
    enough: asyncio.Event,
) -> str | None:
    """The request id if the client saw a complete 200 answer, else None."""
    await asyncio.sleep(delay)
    rid = f"burst-{index}"
    try:
        async with session.post(
            f"http://127.0.0.1:{port}/v1/images/generations",
            json={"model": "gpt", "prompt": f"fox {index}"},
            headers={"Authorization": f"Bearer {SECRET}", "x-request-id": rid},
        ) as response:
            body = orjson.loads(await response.read())
            if response.status == 200 and body["data"][0]["b64_json"]:
                seen.append(rid)
                if len(seen) >= KILL_AT:
                    enough.set()
                return rid
            return None
    except (aiohttp.ClientError, orjson.JSONDecodeError, KeyError):
        return None


async def test_sigkill_mid_burst_leaves_a_consistent_ledger(
    tmp_path: Path,
    database: DatabaseUnderTest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRASH_OA_KEY", "sk-test")
    port = _free_port()
    async with FakeOpenAI(hold_seconds=0.3) as upstream:
        config: dict[str, Any] = {
            "server": {"port": port, "data_dir": str(tmp_path / "data")},
            "providers": {
                "oa": {
                    "kind": "openai",
                    "base_url": f"{upstream.base_url}/v1",
                    "keys": ["CRASH_OA_KEY"],
                }
            },
            "deployments": {
                "gpt": {"provider": "oa", "model": "gpt-image-1.5", "price": {"per_image": 0.04}}
            },
            "routes": {"gpt": ["gpt"]},
            "auth": {
                "keys": [
                    {
                        "name": "burst",
                        "sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
                        "budget_usd_per_day": 100.0,
                    }
                ]
            },
            "database": database.config(),
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with _serving(path, port) as gateway, session:
            done: list[str] = []
            enough = asyncio.Event()
            burst = [
                asyncio.create_task(_one(session, port, i, i * SPACING, done, enough))
                for i in range(BURST)
            ]
            await asyncio.wait_for(enough.wait(), 30)
            gateway.send_signal(signal.SIGKILL)
            await gateway.wait()
            seen = {rid for rid in await asyncio.gather(*burst) if rid is not None}
        assert 0 < len(seen) < BURST, "the kill should land mid-burst"

        async with _serving(path, port):  # the restart settles what the crash left pending
            engine = database.engine()
            try:
                async with engine.connect() as connection:
                    rows = (
                        await connection.execute(
                            select(RequestRow.request_id, RequestRow.state, RequestRow.cost_micros)
                        )
                    ).all()
                    spend = (
                        await connection.execute(
                            select(
                                func.sum(SpendRow.booked_micros), func.sum(SpendRow.reserved_micros)
                            ).where(SpendRow.period == "day")
                        )
                    ).one()
            finally:
                await engine.dispose()

    succeeded = [rid for rid, state, _ in rows if state == "succeeded"]
    for rid in seen:
        assert succeeded.count(rid) == 1, (
            f"{rid} was seen to succeed but is booked {succeeded.count(rid)}x"
        )
    assert not [rid for rid, state, _ in rows if state == "pending"]
    assert {state for _, state, _ in rows} <= {"succeeded", "abandoned"}
    abandoned = [cost for _, state, cost in rows if state == "abandoned"]
    assert abandoned and not any(abandoned)  # the requests in flight were settled at cost 0
    booked = sum(cost for _, state, cost in rows if state == "succeeded")
    assert tuple(spend) == (booked, 0)  # every reservation was settled or released
    assert booked == 40_000 * len(succeeded)
