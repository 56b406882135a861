"""CLI access to the database the config names: keys, usage and migrations, without a server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.config.settings import Settings
from imagegate.state import engine as database


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The configured database, migrated to the newest schema, disposed of on exit."""
    engine = database.create_engine(
        settings.database_url(), search_path=settings.database.search_path
    )
    try:
        await database.upgrade(engine, search_path=settings.database.search_path)
        yield engine
    finally:
        await engine.dispose()


def shown_url(settings: Settings) -> str:
    """The URL without its password, fit for printing."""
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url()).render_as_string(hide_password=True)
