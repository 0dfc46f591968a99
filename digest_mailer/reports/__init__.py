"""Reports on what the issues did (``digest-mailer report``), in small parts:

- :mod:`~digest_mailer.reports.attribution`: which issue each unsubscribe is put down to
  (the signed issue of the link used; for a request by email, the last issue sent to
  that reader within 30 days before it);
- :mod:`~digest_mailer.reports.issue`: one issue's figures (deliveries, time to send,
  bounces and their reasons, complaints, unsubscribes, clicks per link);
- :mod:`~digest_mailer.reports.weekly`: the list's size by status at the end of each week,
  rebuilt from the events history in one pass (pure);
- :mod:`~digest_mailer.reports.across`: every issue started since a date, and the weeks;
- :mod:`~digest_mailer.reports.charts`: the charts as SVG, drawn with matplotlib (pure;
  imported only when an HTML report is written);
- :mod:`~digest_mailer.reports.html`: the self-contained HTML page (pure).

Read-only: no report changes the store.
"""
