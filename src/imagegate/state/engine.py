"""The database engine: SQLite by default, PostgreSQL by URL, and the migrations run on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str, *, search_path: str | None = None) -> AsyncEngine:
    """An async engine for `url`, set up for the gateway's access pattern.

    SQLite: one pooled connection, so the gateway's writes queue in-process instead of failing
    with "database is locked"; WAL so `imagegate usage` can read while the gateway writes.
    PostgreSQL: `search_path` selects the schema holding the tables (tests use one per run).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if search_path is not None:
        connect_args["server_settings"] = {"search_path": search_path}
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, connect_args=connect_args)


def _sqlite_pragmas(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL + synchronous=NORMAL survives a killed process (only a power cut can lose the tail).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")  # another process (the CLI) may hold the lock
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


async def upgrade(engine: AsyncEngine, *, search_path: str | None = None) -> None:
    """Bring the schema to the newest migration; safe to run at every start, by every replica."""
    async with engine.begin() as connection:
        if is_postgres(engine) and search_path is not None:
            await connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{search_path}"')
        await connection.run_sync(_upgrade_sync)


def _upgrade_sync(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config
