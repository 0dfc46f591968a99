"""Operations and reports: scheduled sends, click counts per link, and the issue an
event (an unsubscribe) is attributed to.

- ``scheduled_sends``: a send of one issue file at one time, bound to the fingerprint
  its test send had; a changed file is refused when the time comes.
- ``link_clicks``: with ``[tracking] clicks = true``, how often each link of an issue was
  followed (``/r/TOKEN``). Counts per link, nothing per person.
- ``events.issue_id``: the issue whose link a reader unsubscribed through (its signed
  token names it); NULL for everything else.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from digest_mailer.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.String(100), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("lists", sa.Text(), nullable=False, server_default=""),
        sa.Column("exclude_lists", sa.Text(), nullable=False, server_default=""),
        sa.Column("no_archive", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_scheduled_sends"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_scheduled_sends_state_due", "scheduled_sends", ["state", "due_at"])
    op.create_table(
        "link_clicks",
        sa.Column(
            "issue_id",
            sa.String(100),
            sa.ForeignKey("issues.id", ondelete="CASCADE", name="fk_link_clicks_issue_id_issues"),
            nullable=False,
        ),
        sa.Column("link_number", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("first_at", UTCDateTime(), nullable=True),
        sa.Column("last_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("issue_id", "link_number", name="pk_link_clicks"),
    )
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("issue_id", sa.String(100), nullable=True))
        batch.create_index("ix_events_issue_id", ["issue_id"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_issue_id")
        batch.drop_column("issue_id")
    op.drop_table("link_clicks")
    op.drop_index("ix_scheduled_sends_state_due", table_name="scheduled_sends")
    op.drop_table("scheduled_sends")
