"""The public archive of past issues: its pages, its Atom feed and its static export.

- :mod:`~digest_mailer.archive.paths`: an issue's slug and URL (imported by the composer
  for the "View in your browser" link);
- :mod:`~digest_mailer.archive.render`: the page of one issue as its send writes it,
  from the composed issue, with nothing personal in it;
- :mod:`~digest_mailer.archive.site`: the index, issue pages and feed, from published
  issues (the same bytes for ``serve`` and for ``archive export``);
- :mod:`~digest_mailer.archive.store`: the rows, publish and unpublish;
- :mod:`~digest_mailer.archive.export`: the static files for the think-tank's website.

``render``, ``site`` and ``paths`` import nothing from the store.
"""
