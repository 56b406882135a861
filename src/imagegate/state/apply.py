"""Apply journaled settlements and usage updates in one transaction, idempotently.

The ledger journals each booking (`ledger/journal.py`) and its writer hands them here in batches.
One batch is one transaction of bulk statements, whatever its size:

    SELECT   … FOR UPDATE the rows admission wrote (pending) and rows re-priced later, by
             ledger id; none at all in open mode and for keys without a budget
    INSERT   request rows nobody admitted to the database (no budget, no Idempotency-Key);
             one that is there already (a unique ledger id) means a replay: the
             transaction is redone with every row read first
    UPDATE   pending rows to succeeded / failed; re-priced rows to their usage cost (executemany)
    INSERT   attempt rows, each finding its request row by ledger id … ON CONFLICT
             (request_pk, seq) DO NOTHING
    UPSERT   spend counters, booked += cost, reserved -= the estimate the row reserved

Applying a record twice changes nothing: a settlement applies only to a row that is missing,
`pending` or `abandoned` (the last when a replica's recovery gave up on it while its settlement
was still in flight: it was answered, so it is booked after all), and a usage update only to a
`succeeded` row still priced by the table. That is what lets the journal be replayed after a
crash without knowing how much of it was applied.

The two inserts, one row per request and per attempt, run as plain executemany statements with
positional tuples (`_Insert`): SQLAlchemy's own executemany processed every parameter of every
row in Python, which was most of the cost of booking a request.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnDefault, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from imagegate.state.bookings import ABANDONED, PENDING, SUCCEEDED
from imagegate.state.models import AttemptRow, RequestRow, SpendRow

REQUESTS: Table = RequestRow.__table__  # type: ignore[assignment]
ATTEMPTS: Table = AttemptRow.__table__  # type: ignore[assignment]
SPEND: Table = SpendRow.__table__  # type: ignore[assignment]

# The columns a settlement sets on a row admitted as pending (the rest were written then).
SETTLED_COLUMNS = (
    "state",
    "cost_micros",
    "outcome",
    "diagnosis",
    "deployment",
    "provider",
    "model",
    "images",
    "priced_by",
    "latency_ms",
    "attempts",
    "settled_at",
)
_TIMES = ("created_at", "settled_at")

Record = Mapping[str, Any]
SpendKey = tuple[str, str, str]  # lineage, period, start


class ConcurrentApply(Exception):
    """Rows of this batch were written by another transaction meanwhile; nothing was applied."""


@dataclass(slots=True)
class _Known:
    """What the batch knows of one ledger row: as read, then as this batch leaves it."""

    pk: int | None
    state: str
    cost: int
    priced_by: str | None
    estimate: int
    written: dict[str, Any] | None = None  # the insert or update values this batch will write
    attempts: list[dict[str, Any]] | None = None  # the attempt rows this batch will write


@dataclass(slots=True)
class _Plan:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    reprices: list[dict[str, Any]] = field(default_factory=list)
    attempt_costs: list[dict[str, Any]] = field(default_factory=list)
    spend: dict[SpendKey, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    applied: int = 0


async def apply(engine: AsyncEngine, records: Sequence[Record]) -> int:
    """Apply `records` (settlements and usage updates, in journal order) in one transaction.

    Returns how many changed the ledger; the others had been applied before (a replay).
    """
    if not records:
        return 0
    try:
        return await _apply(engine, records, read_all=False)
    except _Replayed:
        # Rows the batch took for new were there already: a replay. Redo it knowing them all.
        return await _apply(engine, records, read_all=True)


class _Replayed(Exception):
    """An insert met an existing row: the transaction is rolled back and read in full."""


async def _apply(engine: AsyncEngine, records: Sequence[Record], *, read_all: bool) -> int:
    async with engine.begin() as connection:
        ids = _to_read(records, read_all=read_all)
        known = await _read(connection, ids) if ids else {}
        plan = _Plan()
        for record in records:
            if record["op"] == "settle":
                _settle(plan, known, record)
            else:
                _reprice(plan, known, record)
        await _write(connection, plan, known, strict=read_all)
    return plan.applied


def _to_read(records: Sequence[Record], *, read_all: bool) -> set[str]:
    """The rows whose state the batch needs: all of them, or (the common case, which saves a
    query per batch) only rows admitted as pending and rows re-priced by a settlement of an
    earlier batch. A settlement that admission did not write is taken for new; if its insert
    then meets the row, `_write` raises _Replayed."""
    if read_all:
        return {record["id"] for record in records}
    born = {r["id"] for r in records if r["op"] == "settle" and not r.get("admitted", True)}
    return {record["id"] for record in records if record["id"] not in born}


async def _read(connection: AsyncConnection, ids: Iterable[str]) -> dict[str, _Known]:
    query = select(
        RequestRow.ledger_id,
        RequestRow.id,
        RequestRow.state,
        RequestRow.cost_micros,
        RequestRow.priced_by,
        RequestRow.estimate_micros,
    ).where(RequestRow.ledger_id.in_(sorted(ids)))
    # Locked (PostgreSQL; SQLite has one writer anyway): a replica's recovery must not abandon a
    # row between this read and the update that settles it, or its estimate is released twice.
    rows = (await connection.execute(query.with_for_update())).all()
    return {str(row[0]): _Known(*row[1:]) for row in rows}


def _settle(plan: _Plan, known: dict[str, _Known], record: Record) -> None:
    row = dict(record["row"])
    for name in _TIMES:
        row[name] = datetime.datetime.fromisoformat(row[name])
    attempts = [dict(attempt) for attempt in record["attempts"]]
    found = known.get(record["id"])
    if found is None:
        # Never admitted to the database (no budget to reserve): the row is born settled.
        plan.inserts.append(row)
        cost = row["cost_micros"]
        known[record["id"]] = _Known(None, row["state"], cost, "table", 0, row, attempts)
        released = 0
    elif found.state in (PENDING, ABANDONED) and found.written is None:
        values = {name: row[name] for name in SETTLED_COLUMNS}
        # A failure frees the Idempotency-Key for the client's retry; a success keeps it, unless
        # abandoning the row freed it already (a retry may hold it by now).
        keeps = row["state"] == SUCCEEDED and found.state == PENDING
        values["idempotency_slot"] = row["idempotency_slot"] if keeps else None
        values["b_pk"] = found.pk
        plan.updates.append(values)
        # an abandoned row's reservation was released by the recovery that abandoned it
        released = found.estimate if found.state == PENDING else 0
        found.state, found.cost, found.priced_by = row["state"], row["cost_micros"], "table"
        found.written, found.attempts = values, attempts
    else:
        return  # settled before: this is a replay
    plan.applied += 1
    _add_spend(plan, record, row["cost_micros"], -released)


def _reprice(plan: _Plan, known: dict[str, _Known], record: Record) -> None:
    found = known.get(record["id"])
    if found is None or found.state != SUCCEEDED or found.priced_by == "usage":
        return  # not settled as a success (yet), or re-priced before
    cost = int(record["cost"])
    delta = cost - found.cost
    by_seq = {int(seq): int(value) for seq, value in record["attempts"]}
    if found.written is not None and found.attempts is not None:
        # Settled in this very batch (the usual case): write the final figures at once.
        found.written["cost_micros"] = cost
        found.written["priced_by"] = "usage"
        for seq, value in by_seq.items():
            if seq < len(found.attempts):
                found.attempts[seq]["cost_micros"] = value
    else:
        plan.reprices.append({"b_pk": found.pk, "cost_micros": cost, "priced_by": "usage"})
        plan.attempt_costs += [
            {"b_pk": found.pk, "b_seq": seq, "cost_micros": value} for seq, value in by_seq.items()
        ]
    found.cost, found.priced_by = cost, "usage"
    plan.applied += 1
    _add_spend(plan, record, delta, 0)


def _add_spend(plan: _Plan, record: Record, booked: int, reserved: int) -> None:
    lineage = record.get("lineage")
    if lineage is None or not (booked or reserved):
        return
    for name, start in record["periods"]:
        figures = plan.spend[(lineage, name, start)]
        figures[0] += booked
        figures[1] += reserved


async def _write(
    connection: AsyncConnection, plan: _Plan, known: Mapping[str, _Known], *, strict: bool
) -> None:
    dialect = connection.dialect
    inserts = _inserts(dialect)
    if plan.inserts:
        try:
            await connection.exec_driver_sql(
                inserts.request.sql, [inserts.request.params(row) for row in plan.inserts]
            )
        except IntegrityError as exc:
            # A ledger id that is there already (the only unique column these rows fill).
            if not strict:
                raise _Replayed from exc
            # Read as missing a moment ago: only another process applying the same journal
            # can have written it since. The writer retries, and then reads it.
            raise ConcurrentApply(f"a ledger row appeared while this batch applied: {exc}") from exc
    by_pk = REQUESTS.c.id == bindparam("b_pk")
    await _update_many(connection, REQUESTS, by_pk, plan.updates)
    await _update_many(connection, REQUESTS, by_pk, plan.reprices)
    by_seq = (ATTEMPTS.c.request_pk == bindparam("b_pk")) & (ATTEMPTS.c.seq == bindparam("b_seq"))
    await _update_many(connection, ATTEMPTS, by_seq, plan.attempt_costs)
    attempts = _attempt_params(known, inserts.attempt)
    if attempts:
        await connection.exec_driver_sql(inserts.attempt.sql, attempts)
    if plan.spend:
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        upsert = insert(SPEND)
        upsert = upsert.on_conflict_do_update(
            index_elements=["key_id", "period", "start"],
            set_={
                "booked_micros": SPEND.c.booked_micros + upsert.excluded.booked_micros,
                "reserved_micros": SPEND.c.reserved_micros + upsert.excluded.reserved_micros,
            },
        )
        # In key order, as admission takes them: replicas' transactions never wait in a cycle.
        rows = [
            {"key_id": k, "period": p, "start": s, "booked_micros": b, "reserved_micros": r}
            for (k, p, s), (b, r) in sorted(plan.spend.items())
        ]
        await connection.execute(upsert, rows)


async def _update_many(
    connection: AsyncConnection, table: Table, where: Any, rows: list[dict[str, Any]]
) -> None:
    """One executemany UPDATE per set of columns (the SET clause is taken from the keys)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(row))].append(row)
    for group in groups.values():
        await connection.execute(update(table).where(where), group)


def _attempt_params(known: Mapping[str, _Known], insert: _Insert) -> list[tuple[Any, ...]]:
    rows = []
    for ledger_id, found in known.items():
        if found.attempts is None or found.written is None:
            continue
        settled_at = found.written["settled_at"]
        for seq, attempt in enumerate(found.attempts):
            values = {**attempt, "ledger_id": ledger_id, "seq": seq, "created_at": settled_at}
            rows.append(insert.params(values))
    return rows


@dataclass(frozen=True, slots=True)
class _Insert:
    """An INSERT compiled for one dialect, run as a plain executemany of positional tuples."""

    sql: str
    # The parameters in the order the SQL takes them, each with the value for a row that
    # leaves it out (its column's scalar default, else None).
    fields: tuple[tuple[str, Any], ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # the types' bind conversions

    @classmethod
    def compile(cls, statement: Insert, dialect: Dialect, defaults: Mapping[str, Any]) -> _Insert:
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        if len(names) != len(compiled.binds):
            raise RuntimeError(f"{dialect.name}: the ledger inserts need a positional paramstyle")
        processors = []
        for index, name in enumerate(names):
            type_ = compiled.binds[name].type
            process = type_.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((index, process))
        fields = tuple((name, defaults.get(name)) for name in names)
        return cls(compiled.string, fields, tuple(processors))

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        row = [values.get(name, default) for name, default in self.fields]
        for index, process in self.processors:
            row[index] = process(row[index])
        return tuple(row)


@dataclass(frozen=True, slots=True)
class _Inserts:
    request: _Insert
    attempt: _Insert


_COMPILED: dict[tuple[str, str, str], _Inserts] = {}


def _inserts(dialect: Dialect) -> _Inserts:
    key = (dialect.name, dialect.driver, dialect.paramstyle)
    found = _COMPILED.get(key)
    if found is None:
        found = _COMPILED[key] = _Inserts(_request_insert(dialect), _attempt_insert(dialect))
    return found


def _request_insert(dialect: Dialect) -> _Insert:
    columns = [column for column in REQUESTS.columns if column.name != "id"]
    # inline: no RETURNING of the new keys (the attempts find them by ledger id)
    statement = (
        REQUESTS.insert()
        .inline()
        .values({column.name: bindparam(column.name, type_=column.type) for column in columns})
    )
    return _Insert.compile(statement, dialect, _scalar_defaults(REQUESTS))


def _attempt_insert(dialect: Dialect) -> _Insert:
    """INSERT … SELECT: each attempt finds its request's key by ledger id, so rows inserted a
    statement earlier need no RETURNING. Conflicts are left alone (a replay of attempts)."""
    columns = [column for column in ATTEMPTS.columns if column.name not in ("id", "request_pk")]
    source = select(
        REQUESTS.c.id, *[bindparam(column.name, type_=column.type) for column in columns]
    ).where(REQUESTS.c.ledger_id == bindparam("ledger_id", type_=REQUESTS.c.ledger_id.type))
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(ATTEMPTS)
        .from_select(["request_pk", *[column.name for column in columns]], source)
        .on_conflict_do_nothing(index_elements=["request_pk", "seq"])
    )
    return _Insert.compile(statement, dialect, _scalar_defaults(ATTEMPTS))


def _scalar_defaults(table: Table) -> dict[str, Any]:
    return {
        column.name: column.default.arg
        for column in table.columns
        if isinstance(column.default, ColumnDefault) and column.default.is_scalar
    }
