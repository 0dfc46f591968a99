"""Reply caps: each reply records its mailbox (without a +tag) and its domain, and the
time it was queued is indexed (the caps count the last hour's replies).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replies") as batch:
        batch.add_column(
            sa.Column("mailbox_key", sa.String(320), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("domain", sa.String(255), nullable=False, server_default=""))
        batch.create_index(op.f("ix_replies_mailbox_key"), ["mailbox_key"])
        batch.create_index(op.f("ix_replies_domain"), ["domain"])
        batch.create_index(op.f("ix_replies_created_at"), ["created_at"])


def downgrade() -> None:
    with op.batch_alter_table("replies") as batch:
        batch.drop_index(op.f("ix_replies_created_at"))
        batch.drop_index(op.f("ix_replies_domain"))
        batch.drop_index(op.f("ix_replies_mailbox_key"))
        batch.drop_column("domain")
        batch.drop_column("mailbox_key")
