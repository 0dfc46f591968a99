"""digest-mailer: distribute an email newsletter."""

__version__ = "0.1.0"
