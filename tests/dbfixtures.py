"""The `database` fixture: every ledger, key and usage test runs on SQLite and on PostgreSQL.

PostgreSQL gets a fresh schema per test (dropped afterwards) at IMAGEGATE_TEST_POSTGRES_URL,
by default the CI service at 127.0.0.1:5432, database `test`. It is skipped only when that
server is unreachable and CI is unset: in CI an unreachable server fails the run.

A test that also starts a gateway must request `database` before `start_gateway`: fixtures are
torn down in reverse, and the gateway's ledger writer must have stopped before the schema goes.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.state.engine import create_engine, upgrade

POSTGRES_URL = os.environ.get(
    "IMAGEGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
_reachable: dict[str, str | None] = {}  # url → None if reachable, else why not


@dataclass(frozen=True, slots=True)
class DatabaseUnderTest:
    backend: str  # sqlite | postgres
    url: str
    search_path: str | None = None

    def config(self) -> dict[str, Any]:
        """The `database:` section of a gateway config for this database."""
        section: dict[str, Any] = {"url": self.url}
        if self.search_path is not None:
            section["search_path"] = self.search_path
        return section

    def engine(self) -> AsyncEngine:
        return create_engine(self.url, search_path=self.search_path)

    async def migrated_engine(self) -> AsyncEngine:
        engine = self.engine()
        await upgrade(engine, search_path=self.search_path)
        return engine


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _postgres_problem() -> str | None:
    if POSTGRES_URL not in _reachable:
        try:
            connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _reachable[POSTGRES_URL] = f"{type(exc).__name__}: {exc}"
        else:
            await connection.close()
            _reachable[POSTGRES_URL] = None
    return _reachable[POSTGRES_URL]


async def _execute(sql: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseUnderTest]:
    if request.param == "sqlite":
        yield DatabaseUnderTest("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
        return
    problem = await _postgres_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable in CI: {problem}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {problem}")
    schema = f"t_{secrets.token_hex(6)}"
    await _execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield DatabaseUnderTest("postgres", POSTGRES_URL, schema)
    finally:
        await _execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest_asyncio.fixture
async def engine(database: DatabaseUnderTest) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on the parametrized database."""
    made = await database.migrated_engine()
    yield made
    await made.dispose()
