"""The tables: client keys, one ledger row per client request and per upstream attempt, and the
per-key spend counters that budgets are checked against.

Money is BigInteger micro-dollars (exact sums on both backends). Times are UTC.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Autoincrement needs INTEGER PRIMARY KEY on SQLite; BIGINT elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime.datetime]):
    """Aware UTC datetimes in and out; SQLite stores them naive, so UTC is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware datetimes")
        return value.astimezone(datetime.UTC)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime.datetime)
        return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ClientKeyRow(Base):
    """A client key made by `imagegate keys create` or the admin API. Only its SHA-256 is kept."""

    __tablename__ = "client_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise it
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    routes: Mapped[list[str] | None] = mapped_column(JSON)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    images_per_minute: Mapped[int | None] = mapped_column(Integer)
    budget_day_micros: Mapped[int | None] = mapped_column(BigInteger)
    budget_month_micros: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime)
    rotated_from: Mapped[str | None] = mapped_column(String(32))
    # The first key of its rotation chain; spend is counted per lineage, so a rotated key keeps
    # the day's and month's spend of the key it replaced.
    lineage: Mapped[str] = mapped_column(String(32))


class RequestRow(Base):
    """One client request, booked once by its `ledger_id`.

    A request that reserves against a budget (or claims an Idempotency-Key) is written `pending`
    at admission; every other request is written only when its settlement is applied from the
    journal (`ledger/writer.py`), already `succeeded` or `failed`. `abandoned`: the process died
    before settling it.
    """

    __tablename__ = "ledger_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Made by the ledger at admission, unique: what makes replaying the journal idempotent
    # (a client's x-request-id need not be unique). NULL only on rows from before the journal.
    ledger_id: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str] = mapped_column(String(200), index=True)
    key_id: Mapped[str | None] = mapped_column(String(64))
    key_lineage: Mapped[str | None] = mapped_column(String(64))  # whose spend counters it moved
    route: Mapped[str] = mapped_column(String(200))
    deployment: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    requested: Mapped[int] = mapped_column(Integer)
    images: Mapped[int] = mapped_column(Integer, default=0)
    geometry: Mapped[str | None] = mapped_column(String(64))
    quality: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(64))  # failure kind or error code
    diagnosis: Mapped[str | None] = mapped_column(Text)
    estimate_micros: Mapped[int] = mapped_column(BigInteger)  # reserved at admission; 0: none
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    priced_by: Mapped[str | None] = mapped_column(String(16))  # table | usage
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(300))
    # key id + Idempotency-Key while it guards against a repeat; cleared when a retry may reuse it.
    idempotency_slot: Mapped[str | None] = mapped_column(String(400), unique=True)
    instance: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime)
    day: Mapped[str] = mapped_column(String(10))  # UTC date, for grouping on any backend
    settled_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_ledger_requests_key_created", "key_id", "created_at"),
        Index("ix_ledger_requests_created", "created_at"),
        Index("ix_ledger_requests_state_instance", "state", "instance"),
        Index("ux_ledger_requests_ledger_id", "ledger_id", unique=True),
    )


class AttemptRow(Base):
    """One upstream attempt of a request, successes and failures alike (never a key's secret)."""

    __tablename__ = "ledger_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("ledger_requests.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(300))
    route: Mapped[str] = mapped_column(String(200))
    deployment: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    upstream_key_id: Mapped[str | None] = mapped_column(String(200))
    client_key_id: Mapped[str | None] = mapped_column(String(64))
    requested: Mapped[int] = mapped_column(Integer)
    images: Mapped[int] = mapped_column(Integer)
    geometry: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(64))  # ok or the failure kind
    status: Mapped[int | None] = mapped_column(Integer)
    diagnosis: Mapped[str | None] = mapped_column(Text)
    upstream_called: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[int] = mapped_column(Integer)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime)

    # One row per attempt of a request, also when a settlement is applied twice (a replay).
    __table_args__ = (Index("ux_ledger_attempts_request_seq", "request_pk", "seq", unique=True),)


class SpendRow(Base):
    """A key's booked and reserved spend in one budget period (a UTC day or month).

    Admission raises `reserved` by a request's estimate only if booked + reserved stays within
    the budget (one conditional UPDATE: atomic on SQLite and across PostgreSQL replicas);
    settlement moves the estimate from `reserved` to the actual cost in `booked`. Keys without
    a budget reserve nothing: their settlements only add to `booked`.
    """

    __tablename__ = "budget_spend"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)  # day | month
    start: Mapped[str] = mapped_column(String(10), primary_key=True)  # 2025-06-01
    booked_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_micros: Mapped[int] = mapped_column(BigInteger, default=0)
