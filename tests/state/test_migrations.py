"""The migrations and the models agree, on both backends; upgrading twice is harmless."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.state.engine import upgrade
from imagegate.state.models import Base
from tests.dbfixtures import DatabaseUnderTest


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_autogenerate_finds_nothing_to_change(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await connection.run_sync(_diff) == []


async def test_upgrade_twice_is_a_no_op(engine: AsyncEngine, database: DatabaseUnderTest) -> None:
    await upgrade(engine, search_path=database.search_path)
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"client_keys", "ledger_requests", "ledger_attempts", "budget_spend"} <= tables
    assert "alembic_version" in tables
