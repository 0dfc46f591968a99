"""Click counts (opt-in, ``[tracking] clicks``): how often each link of an issue was
followed, per link and per issue, never per person.

- :mod:`~digest_mailer.clicks.links`: the signed ``/r/TOKEN`` links and the numbering of
  an issue's links (pure: the composer uses it, no store);
- :mod:`~digest_mailer.clicks.store`: the ``link_clicks`` rows: each link's URL, kept
  when a send starts, and its count.

The redirect itself is :mod:`digest_mailer.web.clicks` (``serve``).
"""
