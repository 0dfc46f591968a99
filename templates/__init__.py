"""The default templates; this file lets them ship inside the digest_mailer package."""
