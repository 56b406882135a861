"""A key's cache entry expiring under load costs one database query, not one per request."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import event

from imagegate.state.engine import create_engine, upgrade
from imagegate.state.keys import KeyLimits, KeyStore, digest


async def test_concurrent_lookups_of_one_key_share_one_query(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await upgrade(engine)
    store = KeyStore(engine)
    made = await store.create("team-a", KeyLimits())
    queries: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
    try:
        found = await asyncio.gather(*[store.by_digest(digest(made.secret)) for _ in range(64)])
        assert {key.id for key in found if key is not None} == {made.key.id}
        assert len([q for q in queries if "client_keys" in q]) == 1

        queries.clear()
        answers = await asyncio.gather(*[store.any_active() for _ in range(64)])
        assert answers == [True] * 64
        assert len([q for q in queries if "client_keys" in q]) == 1
    finally:
        await engine.dispose()


async def test_a_change_made_meanwhile_is_not_hidden_by_a_shared_lookup(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await upgrade(engine)
    store = KeyStore(engine)
    made = await store.create("team-a", KeyLimits())
    try:
        before = asyncio.ensure_future(store.by_digest(digest(made.secret)))
        await asyncio.sleep(0)  # its query is under way
        await store.revoke(made.key.id)
        after = await store.by_digest(digest(made.secret))
        assert after is not None and after.revoked_at is not None
        await before
    finally:
        await engine.dispose()
