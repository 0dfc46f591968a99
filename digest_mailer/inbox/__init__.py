"""Mail sent to the digest address: reading mailboxes, deciding, acting, replying.

- :mod:`~digest_mailer.inbox.sources`: mbox, Maildir and IMAP (pure, no database);
- :mod:`~digest_mailer.inbox.classify` and :mod:`~digest_mailer.inbox.lexicon`: one
  label per message (pure);
- :mod:`~digest_mailer.inbox.run`: the mailbox run (decide, then act per message in a
  savepoint; errors hold one message, never the run);
- :mod:`~digest_mailer.inbox.actions`: double opt-in, unsubscribe, review;
- :mod:`~digest_mailer.inbox.outbox`: automatic replies and their caps.
"""
