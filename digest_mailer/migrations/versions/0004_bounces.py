"""Bounces and complaints: one row per failed recipient of a report, and each
subscriber's bounce score.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from digest_mailer.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("bounce_score", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_bounce_at", UTCDateTime(), nullable=True))
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_key", sa.String(255), nullable=False),
        sa.Column("report_message_id", sa.Text(), nullable=True),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("matched_by", sa.String(20), nullable=False),
        sa.Column("score_added", sa.Float(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_bounces_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_bounces_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounces")),
    )
    op.create_index("uq_bounces_report_address", "bounces", ["report_key", "address"], unique=True)
    op.create_index(op.f("ix_bounces_subscriber_id"), "bounces", ["subscriber_id"])
    op.create_index(op.f("ix_bounces_delivery_id"), "bounces", ["delivery_id"])
    op.create_index(op.f("ix_bounces_created_at"), "bounces", ["created_at"])


def downgrade() -> None:
    op.drop_table("bounces")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("last_bounce_at")
        batch.drop_column("bounce_score")
