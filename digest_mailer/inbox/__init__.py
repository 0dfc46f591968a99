"""Mail sent to the digest address: reading mailboxes, deciding, acting, replying.

- :mod:`~digest_mailer.inbox.sources`: mbox, Maildir and IMAP (pure, no database);
- :mod:`~digest_mailer.inbox.classify` and :mod:`~digest_mailer.inbox.lexicon`: one
  label per message (pure), from its parts: :mod:`~digest_mailer.inbox.reading` (headers,
  bodies, charsets), :mod:`~digest_mailer.inbox.quoting` (what the sender wrote),
  :mod:`~digest_mailer.inbox.automatic` (mail no person wrote),
  :mod:`~digest_mailer.inbox.authentication` (what our server says of the sender) and
  :mod:`~digest_mailer.inbox.confirm_tokens`;
- :mod:`~digest_mailer.inbox.run`: the mailbox run (decide, then act per message in a
  savepoint; errors hold one message, never the run);
- :mod:`~digest_mailer.inbox.actions`: recording and acting on each message, with
  :mod:`~digest_mailer.inbox.subscriptions` (double opt-in, unsubscribe),
  :mod:`~digest_mailer.inbox.confirmations` (tokens in the store, no mail; the web pages
  use it too) and :mod:`~digest_mailer.inbox.review` (staff review);
- :mod:`~digest_mailer.inbox.outbox`: automatic replies and their caps.
"""
