"""Client keys, the ledger (requests and attempts) and per-key budget spend.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_spend",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("start", sa.String(length=10), nullable=False),
        sa.Column("booked_micros", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "period", "start", name=op.f("pk_budget_spend")),
    )
    op.create_table(
        "client_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("routes", sa.JSON(), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("images_per_minute", sa.Integer(), nullable=True),
        sa.Column("budget_day_micros", sa.BigInteger(), nullable=True),
        sa.Column("budget_month_micros", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rotated_from", sa.String(length=32), nullable=True),
        sa.Column("lineage", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_keys")),
        sa.UniqueConstraint("sha256", name=op.f("uq_client_keys_sha256")),
    )
    op.create_table(
        "ledger_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("key_lineage", sa.String(length=64), nullable=True),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("geometry", sa.String(length=64), nullable=True),
        sa.Column("quality", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("diagnosis", sa.Text(), nullable=True),
        sa.Column("estimate_micros", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("priced_by", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("idempotency_slot", sa.String(length=400), nullable=True),
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_requests")),
        sa.UniqueConstraint("idempotency_slot", name=op.f("uq_ledger_requests_idempotency_slot")),
    )
    with op.batch_alter_table("ledger_requests", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_requests_created", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_ledger_requests_key_created", ["key_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_requests_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            "ix_ledger_requests_state_instance", ["state", "instance"], unique=False
        )

    op.create_table(
        "ledger_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "request_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("upstream_key_id", sa.String(length=200), nullable=True),
        sa.Column("client_key_id", sa.String(length=64), nullable=True),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("geometry", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("diagnosis", sa.Text(), nullable=True),
        sa.Column("upstream_called", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_pk"],
            ["ledger_requests.id"],
            name=op.f("fk_ledger_attempts_request_pk_ledger_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_attempts")),
    )
    with op.batch_alter_table("ledger_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_attempts_request_pk"), ["request_pk"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_attempts_request_pk"))

    op.drop_table("ledger_attempts")
    with op.batch_alter_table("ledger_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_requests_state_instance")
        batch_op.drop_index(batch_op.f("ix_ledger_requests_request_id"))
        batch_op.drop_index("ix_ledger_requests_key_created")
        batch_op.drop_index("ix_ledger_requests_created")

    op.drop_table("ledger_requests")
    op.drop_table("client_keys")
    op.drop_table("budget_spend")
