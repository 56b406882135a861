"""Alembic environment: always run on a connection handed in by `state.engine.upgrade`.

The gateway migrates itself on start (`imagegate serve`) and on `imagegate db upgrade`; both pass
the async engine's connection here through `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from imagegate.state.models import Base

# Replicas starting together would race on the same migration; one takes this lock, the others
# wait for it and then find the schema current.
_PG_LOCK = 0x1A6E6A7E


def run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("imagegate migrations run through `imagegate db upgrade`")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
