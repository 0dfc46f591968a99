"""Links bound to one person: subscriber ids are never reused, and each subscriber has a
random value that its unsubscribe links sign.

SQLite reuses the highest rowid after that row is deleted, so a purged subscriber's link
could name the next person added; the table is rebuilt with AUTOINCREMENT, which never
reuses an id. (PostgreSQL's serial sequence never goes back.) ``link_salt`` is empty for
the subscribers of before this revision, whose links in mail already sent keep working
as they were signed; every new subscriber gets a random one.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "subscribers",
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch:
        batch.add_column(sa.Column("link_salt", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("link_salt")
