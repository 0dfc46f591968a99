"""Bounces and complaints: delivery reports turned into subscriber status, on proof only.

- :mod:`~digest_mailer.bounces.reports`: reading reports (pure: no database);
- :mod:`~digest_mailer.bounces.scoring`: scoring, send-time refusals, the bounce queries;
- :mod:`~digest_mailer.bounces.process`: matching reports to deliveries, the mailbox run.

The package itself imports nothing, so importing the pure report reader loads no store.
"""
