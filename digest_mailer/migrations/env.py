"""Alembic environment: migrations run on the engine the tool opened, never from a file.

On SQLite, foreign keys are switched off while migrations run (outside the transaction,
where SQLite allows it): a migration that rebuilds a table (batch mode copies it, drops
the old one and renames the copy) must not cascade the drop to the rows that refer to
it. The keys are checked afterwards and switched on again.
"""

from alembic import context

from digest_mailer.models import Base

engine = context.config.attributes["engine"]
sqlite = engine.dialect.name == "sqlite"

with engine.connect() as connection:
    raw = connection.connection.dbapi_connection
    if sqlite:
        raw.execute("PRAGMA foreign_keys=OFF")  # no transaction is open yet
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"a migration broke foreign keys: {broken[:5]}")
    finally:
        if sqlite:
            raw.execute("PRAGMA foreign_keys=ON")
