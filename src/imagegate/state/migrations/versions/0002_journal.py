"""The write-ahead journal: a unique ledger id per request, one attempt row per (request, seq).

Both make applying a settlement twice (replaying the journal after a crash) a no-op.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ledger_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ux_ledger_requests_ledger_id", ["ledger_id"], unique=True)
    with op.batch_alter_table("ledger_attempts", schema=None) as batch_op:
        batch_op.create_index("ux_ledger_attempts_request_seq", ["request_pk", "seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("ledger_attempts", schema=None) as batch_op:
        batch_op.drop_index("ux_ledger_attempts_request_seq")
    with op.batch_alter_table("ledger_requests", schema=None) as batch_op:
        batch_op.drop_index("ux_ledger_requests_ledger_id")
        batch_op.drop_column("ledger_id")
