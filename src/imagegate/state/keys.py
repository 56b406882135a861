"""Client keys in the database: made with a random secret shown once, kept as its SHA-256."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from imagegate.core.single_flight import SingleFlight
from imagegate.state.models import ClientKeyRow

SECRET_PREFIX = "ig_"
DISPLAY_CHARS = 10  # "ig_" and 7 more: enough to tell keys apart in a list, useless to guess
# How long a lookup by digest is believed: a key made or revoked by another process (the CLI,
# a replica) takes effect within this time; in this process, at once (the cache is dropped).
LOOKUP_SECONDS = 1.0
LOOKUP_ENTRIES = 10_000  # unknown digests are cached too; past this many, start afresh


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A client key's identity and limits — never its secret. Money in µUSD."""

    id: str
    name: str
    prefix: str = ""
    routes: tuple[str, ...] | None = None  # None: every route
    requests_per_minute: int | None = None
    images_per_minute: int | None = None
    budget_day_micros: int | None = None
    budget_month_micros: int | None = None
    created_at: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    revoked_at: datetime.datetime | None = None
    rotated_from: str | None = None
    lineage: str = ""  # the first key of a rotation chain: budgets carry over a rotation
    source: str = "database"  # or "config" for the static bootstrap keys

    def status(self, now: datetime.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    routes: tuple[str, ...] | None = None
    requests_per_minute: int | None = None
    images_per_minute: int | None = None
    budget_day_micros: int | None = None
    budget_month_micros: int | None = None
    expires_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: `secret` exists only here and is shown to the operator once."""

    key: ClientKey
    secret: str


def _from_row(row: ClientKeyRow) -> ClientKey:
    return ClientKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        routes=None if row.routes is None else tuple(row.routes),
        requests_per_minute=row.requests_per_minute,
        images_per_minute=row.images_per_minute,
        budget_day_micros=row.budget_day_micros,
        budget_month_micros=row.budget_month_micros,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        rotated_from=row.rotated_from,
        lineage=row.lineage,
    )


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class KeyStore:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        # digest → (believed until, key or None): the request path asks once a second per key
        self._looked_up: dict[str, tuple[float, ClientKey | None]] = {}
        self._generation = 0  # bumped by every change made here
        self._lookups: SingleFlight[str, ClientKey | None] = SingleFlight()
        self._any_active_check: SingleFlight[None, bool] = SingleFlight()

    async def create(self, name: str, limits: KeyLimits) -> NewKey:
        async with self._sessions.begin() as session:
            made = self._new_row(name, limits)
            session.add(made.row)
        self._forget()
        return NewKey(_from_row(made.row), made.secret)

    def _forget(self) -> None:
        """A key changed in this process: drop every cached lookup, and any in flight."""
        self._looked_up.clear()
        self._lookups.forget()
        self._any_active_check.forget()
        self._generation += 1

    def _new_row(self, name: str, limits: KeyLimits, rotated: ClientKeyRow | None = None) -> _Made:
        secret = new_secret()
        key_id = f"key_{secrets.token_hex(8)}"
        row = ClientKeyRow(
            id=key_id,
            lineage=key_id if rotated is None else rotated.lineage,
            name=name,
            prefix=secret[:DISPLAY_CHARS],
            sha256=digest(secret),
            routes=None if limits.routes is None else list(limits.routes),
            requests_per_minute=limits.requests_per_minute,
            images_per_minute=limits.images_per_minute,
            budget_day_micros=limits.budget_day_micros,
            budget_month_micros=limits.budget_month_micros,
            created_at=_utcnow(),
            expires_at=limits.expires_at,
            revoked_at=None,
            rotated_from=None if rotated is None else rotated.id,
        )
        return _Made(row, secret)

    async def list(self) -> list[ClientKey]:
        async with self._sessions() as session:
            rows = await session.scalars(select(ClientKeyRow).order_by(ClientKeyRow.created_at))
            return [_from_row(row) for row in rows]

    async def get(self, key_id: str) -> ClientKey | None:
        async with self._sessions() as session:
            row = await session.get(ClientKeyRow, key_id)
            return None if row is None else _from_row(row)

    async def by_digest(self, sha256: str) -> ClientKey | None:
        """The key with this digest, as the database had it at most LOOKUP_SECONDS ago."""
        now = self._clock()
        cached = self._looked_up.get(sha256)
        if cached is not None and cached[0] > now:
            return cached[1]
        # One query per key when its entry expires, however many requests carry it.
        return await self._lookups.do(sha256, partial(self._look_up, sha256, now))

    async def _look_up(self, sha256: str, now: float) -> ClientKey | None:
        generation = self._generation
        async with self._sessions() as session:
            row = await session.scalar(select(ClientKeyRow).where(ClientKeyRow.sha256 == sha256))
            key = None if row is None else _from_row(row)
        if generation != self._generation:
            return key  # a change was made meanwhile: what was read may predate it
        if len(self._looked_up) >= LOOKUP_ENTRIES:
            self._looked_up.clear()
        self._looked_up[sha256] = (now + LOOKUP_SECONDS, key)
        return key

    async def revoke(self, key_id: str) -> ClientKey | None:
        """Revoke the key (idempotent: a revoked key keeps its first revocation time)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ClientKeyRow)
                .where(ClientKeyRow.id == key_id, ClientKeyRow.revoked_at.is_(None))
                .values(revoked_at=_utcnow())
            )
            row = await session.get(ClientKeyRow, key_id, populate_existing=True)
            key = None if row is None else _from_row(row)
        self._forget()
        return key

    async def rotate(self, key_id: str) -> NewKey | None:
        """A new secret with the same name and limits; the old key is revoked in the same
        transaction. None when there is no such key or it is already revoked."""
        async with self._sessions.begin() as session:
            old = await session.get(ClientKeyRow, key_id, with_for_update=True)
            if old is None or old.revoked_at is not None:
                return None
            limits = KeyLimits(
                routes=None if old.routes is None else tuple(old.routes),
                requests_per_minute=old.requests_per_minute,
                images_per_minute=old.images_per_minute,
                budget_day_micros=old.budget_day_micros,
                budget_month_micros=old.budget_month_micros,
                expires_at=old.expires_at,
            )
            old.revoked_at = _utcnow()
            made = self._new_row(old.name, limits, rotated=old)
            session.add(made.row)
        self._forget()
        return NewKey(_from_row(made.row), made.secret)

    async def any_active(self) -> bool:
        """Whether any key is live; concurrent callers share one query."""
        return await self._any_active_check.do(None, self._any_active)

    async def _any_active(self) -> bool:
        now = _utcnow()
        async with self._sessions() as session:
            found = await session.scalar(
                select(ClientKeyRow.id)
                .where(ClientKeyRow.revoked_at.is_(None))
                .where((ClientKeyRow.expires_at.is_(None)) | (ClientKeyRow.expires_at > now))
                .limit(1)
            )
            return found is not None


@dataclass(frozen=True, slots=True)
class _Made:
    row: ClientKeyRow
    secret: str
