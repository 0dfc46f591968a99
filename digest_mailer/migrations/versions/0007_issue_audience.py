"""Sends to lists, one send at a time: each issue records the audiences it was sent to,
one line each ("everyone", or "lists: board, staff; not: interns"); a send process holds a
lease in send_workers whatever the database, its kind saying whether it shares the send
("worker") or sends alone ("single").

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("audiences", sa.Text(), nullable=False, server_default=""))
    # every send before this revision went to every active subscriber
    op.execute(
        "UPDATE issues SET audiences = 'everyone' WHERE state IN ('sending', 'paused', 'sent')"
    )
    with op.batch_alter_table("send_workers") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="worker"))


def downgrade() -> None:
    with op.batch_alter_table("send_workers") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("audiences")
