"""The public archive of past issues, and the welcome mail sent once per subscriber.

``archive_entries`` keeps, per issue whose real send has started, what its public page
shows: the title, volume and date as written, the plain headlines, a description, and
the issue's body as HTML with nothing personal in it (no footer, no unsubscribe link).
It is written once, when the send starts, so a later change of templates never rewrites
a past issue. ``published`` says whether the archive, the feed and the static export
show it (``send --no-archive``, ``archive publish`` / ``archive unpublish``).

``subscribers.welcomed_at`` is when the one welcome message was queued for that person;
the subscribers already there count as welcomed (their ``created_at``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from digest_mailer.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_entries",
        sa.Column(
            "issue_id",
            sa.String(100),
            sa.ForeignKey(
                "issues.id", ondelete="CASCADE", name="fk_archive_entries_issue_id_issues"
            ),
            primary_key=True,
        ),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("volume", sa.String(100), nullable=False, server_default=""),
        sa.Column("issue_date", sa.String(100), nullable=False, server_default=""),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("headlines", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("issue_id", name="pk_archive_entries"),
    )
    op.create_index("ix_archive_entries_published", "archive_entries", ["published", "issued_at"])
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("welcomed_at", UTCDateTime(), nullable=True))
    # the readers of before the welcome mail count as welcomed: one who leaves and comes
    # back is not greeted as new
    op.execute("UPDATE subscribers SET welcomed_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("welcomed_at")
    op.drop_index("ix_archive_entries_published", table_name="archive_entries")
    op.drop_table("archive_entries")
