"""Client keys in the database: the secret is shown once and never stored; revoke and rotate."""

from __future__ import annotations

import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.state.keys import DISPLAY_CHARS, LOOKUP_SECONDS, KeyLimits, KeyStore, digest


async def _every_stored_value(engine: AsyncEngine) -> str:
    dump = []
    async with engine.connect() as connection:
        for table in ("client_keys", "ledger_requests", "ledger_attempts", "budget_spend"):
            rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()
            dump += [repr(tuple(row)) for row in rows]
    return "\n".join(dump)


async def test_the_secret_is_never_stored_only_its_sha256(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    made = await store.create("app", KeyLimits(routes=("sim-image",), images_per_minute=5))
    assert made.secret.startswith("ig_") and len(made.secret) > 40
    stored = await _every_stored_value(engine)
    assert made.secret not in stored
    assert made.secret[DISPLAY_CHARS:] not in stored  # not even the part beyond the prefix
    assert digest(made.secret) in stored
    found = await store.by_digest(digest(made.secret))
    assert found is not None and found.id == made.key.id and found.routes == ("sim-image",)
    assert found.images_per_minute == 5 and found.prefix == made.secret[:DISPLAY_CHARS]


async def test_list_revoke_and_status(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    live = await store.create("live", KeyLimits())
    gone = await store.create("gone", KeyLimits(expires_at=past))
    now = datetime.datetime.now(datetime.UTC)
    assert [k.name for k in await store.list()] == ["live", "gone"]
    assert (await store.get(gone.key.id)).status(now) == "expired"  # type: ignore[union-attr]
    assert await store.any_active()
    revoked = await store.revoke(live.key.id)
    assert revoked is not None and revoked.status(now) == "revoked"
    first = revoked.revoked_at
    again = await store.revoke(live.key.id)
    assert again is not None and again.revoked_at == first  # revoking twice keeps the first time
    assert not await store.any_active()
    assert await store.revoke("key_missing") is None


async def test_rotate_keeps_limits_and_lineage_and_revokes_the_old_key(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    old = await store.create("app", KeyLimits(requests_per_minute=3, budget_day_micros=500_000))
    new = await store.rotate(old.key.id)
    assert new is not None and new.secret != old.secret and new.key.id != old.key.id
    assert new.key.requests_per_minute == 3 and new.key.budget_day_micros == 500_000
    assert new.key.lineage == old.key.id and new.key.rotated_from == old.key.id
    stale = await store.by_digest(digest(old.secret))
    assert stale is not None and stale.revoked_at is not None
    assert await store.rotate(old.key.id) is None  # a revoked key cannot be rotated


async def test_lookups_are_believed_for_a_second_and_forgotten_at_a_change_made_here(
    engine: AsyncEngine,
) -> None:
    now = [0.0]
    store = KeyStore(engine, clock=lambda: now[0])
    elsewhere = KeyStore(engine)  # the CLI or a replica: another process, another cache
    made = await store.create("app", KeyLimits())
    wanted = digest(made.secret)
    assert (await store.by_digest(wanted)).revoked_at is None  # type: ignore[union-attr]

    await elsewhere.revoke(made.key.id)
    assert (await store.by_digest(wanted)).revoked_at is None  # type: ignore[union-attr]
    now[0] += LOOKUP_SECONDS
    assert (await store.by_digest(wanted)).revoked_at is not None  # type: ignore[union-attr]

    mine = await store.create("mine", KeyLimits())
    assert await store.by_digest(digest(mine.secret)) is not None
    await store.revoke(mine.key.id)  # made here: at once
    assert (await store.by_digest(digest(mine.secret))).revoked_at is not None  # type: ignore[union-attr]
