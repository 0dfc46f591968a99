"""Several senders on one send (PostgreSQL): delivery claims with leases, and the
workers taking part.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from digest_mailer.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("worker_id", sa.String(80), nullable=True))
        batch.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))
    op.create_table(
        "send_workers",
        sa.Column("id", sa.String(80), nullable=False),
        sa.Column("issue_id", sa.String(100), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("connections", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issues.id"],
            name=op.f("fk_send_workers_issue_id_issues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_workers")),
    )
    op.create_index(op.f("ix_send_workers_issue_id"), "send_workers", ["issue_id"])


def downgrade() -> None:
    op.drop_table("send_workers")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("worker_id")
