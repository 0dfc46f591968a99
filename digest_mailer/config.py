"""Configuration: a TOML file read with tomllib, every key typed and checked.

Lookup order: an explicit path (``--config``), then ``$DIGEST_MAILER_CONFIG``, then
``./config.toml``. With none of them present the built-in defaults apply, relative to the
current folder. Secrets never live in the file: only names of environment variables do.
"""

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from digest_mailer.errors import ConfigError

ENV_CONFIG = "DIGEST_MAILER_CONFIG"
DEFAULT_FILE = "config.toml"


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///subscribers/digest.db"
    # how long a running send waits for the database to come back (a restart, a full
    # disk) before it pauses; it retries with backoff meanwhile
    retry_seconds: float = 60.0


@dataclass(frozen=True)
class NewsletterConfig:
    title: str = "Policy Digest"
    from_name: str = "Policy Digest"
    from_address: str = "digest@example.org"
    reply_to: str = ""
    request_address: str = "digest@example.org"
    list_id: str = "digest.example.org"
    public_url: str = ""
    postal_address: str = ""
    secret_env: str = "DIGEST_MAILER_SECRET"
    templates: str = ""
    language: str = "en"
    bounce_address: str = ""
    # one welcome mail to each new reader (templates/welcome.*.j2; digest_mailer.welcome)
    welcome: bool = True


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    security: str = "starttls"
    username: str = ""
    password_env: str = "DIGEST_MAILER_SMTP_PASSWORD"
    connections: int = 1
    max_per_second: float = 0.0
    timeout: float = 30.0
    max_attempts: int = 3
    retry_base_seconds: float = 1.0
    verify_certificates: bool = True


@dataclass(frozen=True)
class SeedConfig:
    list: str = "seed"


@dataclass(frozen=True)
class InboxConfig:
    mbox: str = ""
    maildir: str = ""
    imap_host: str = ""
    imap_port: int = 993
    imap_security: str = "ssl"
    imap_ca_file: str = ""
    imap_user: str = ""
    imap_password_env: str = "DIGEST_MAILER_IMAP_PASSWORD"
    imap_folder: str = "INBOX"
    imap_processed_folder: str = ""
    # mark and move every processed message, not only those acted on (a dedicated mailbox)
    imap_move_all: bool = False
    # the mail server whose Authentication-Results headers are trusted
    authserv_id: str = ""
    max_message_bytes: int = 10_000_000
    confirmations_per_hour_per_domain: int = 20
    confirmations_per_hour: int = 200


@dataclass(frozen=True)
class DkimConfig:
    selector: str = ""
    domain: str = ""
    private_key_file: str = ""


@dataclass(frozen=True)
class BouncesConfig:
    mbox: str = ""
    maildir: str = ""
    imap_folder: str = ""
    imap_processed_folder: str = ""
    hard_weight: float = 1.0
    soft_weight: float = 0.5
    bounce_threshold: float = 3.0
    no_such_user_threshold: float = 1.0
    bounce_reset_days: int = 30
    # score reports matched by the recipient address alone (no VERP token, no Message-ID
    # of ours): off, because anyone can write such a report
    trust_unverified: bool = False


@dataclass(frozen=True)
class WorkersConfig:
    lease_seconds: float = 60.0
    claim_batch: int = 200


@dataclass(frozen=True)
class RunConfig:
    # `digest-mailer run` reads the request and bounce mailboxes and sends the outbox of
    # replies this often (scheduled sends are looked for every second)
    poll_seconds: float = 60.0


@dataclass(frozen=True)
class DnsConfig:
    # the resolver `doctor` asks (an IP address, optionally "IP:PORT"); empty: the system's
    nameserver: str = ""


@dataclass(frozen=True)
class SubscribersConfig:
    allow_test_domains: bool = False


@dataclass(frozen=True)
class TrackingConfig:
    # count how often each link of an issue is followed, through PUBLIC_URL/r/TOKEN (the
    # same links for every reader: counts per link, nothing per person); needs public_url
    clicks: bool = False


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("smtp", "security"): ("starttls", "ssl", "none"),
    ("inbox", "imap_security"): ("ssl", "starttls", "none"),
}
POSITIVE: set[tuple[str, str]] = {
    ("smtp", "connections"),
    ("smtp", "max_attempts"),
    ("workers", "claim_batch"),
    ("inbox", "max_message_bytes"),
    ("inbox", "confirmations_per_hour_per_domain"),
    ("inbox", "confirmations_per_hour"),
}
NON_NEGATIVE: set[tuple[str, str]] = {
    ("smtp", "port"),
    ("smtp", "max_per_second"),
    ("smtp", "timeout"),
    ("smtp", "retry_base_seconds"),
    ("database", "retry_seconds"),
    ("inbox", "imap_port"),
    ("bounces", "hard_weight"),
    ("bounces", "soft_weight"),
}
ABOVE_ZERO: set[tuple[str, str]] = {
    ("workers", "lease_seconds"),
    ("bounces", "bounce_threshold"),
    ("bounces", "no_such_user_threshold"),
    ("bounces", "bounce_reset_days"),
    ("run", "poll_seconds"),
}


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``base_dir`` is the folder relative paths are taken from."""

    source: str = "(built-in defaults)"
    base_dir: Path = field(default_factory=Path.cwd)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    newsletter: NewsletterConfig = field(default_factory=NewsletterConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    seed: SeedConfig = field(default_factory=SeedConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    subscribers: SubscribersConfig = field(default_factory=SubscribersConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    bounces: BouncesConfig = field(default_factory=BouncesConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    run: RunConfig = field(default_factory=RunConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def path(self, value: str) -> Path:
        """A path from the file, made absolute against the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against ``base_dir``."""
        url = make_url(self.database.url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            url = url.set(database=str(self.path(url.database)))
        return url.render_as_string(hide_password=False)

    def secret(self, section: str, key: str) -> str:
        """The value of the environment variable named by ``[section] key``."""
        var = getattr(getattr(self, section), key)
        if not var:
            raise ConfigError(f"{self.source}: [{section}] {key} names no environment variable")
        value = os.environ.get(var, "")
        if not value:
            raise ConfigError(
                f"environment variable {var} (named by [{section}] {key} in {self.source}) "
                "is not set"
            )
        return value

    def require(self, section: str, key: str) -> str:
        """A key that a command cannot do without; empty means missing."""
        value = getattr(getattr(self, section), key)
        if value in ("", None):
            raise ConfigError(f"{self.source}: [{section}] {key} is required for this command")
        return value


SECTIONS: dict[str, type] = {
    f.name: f.type  # type: ignore[misc]
    for f in dataclasses.fields(Config)
    if f.name not in ("source", "base_dir")
}


def _type_name(t: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[t]


def _check_value(source: str, section: str, key: str, expected: type, value: object) -> object:
    where = f"{source}: [{section}] {key}"
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{where} must be {_type_name(expected)}, got {value!r}")
    choices = CHOICES.get((section, key))
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    if (section, key) in POSITIVE and value < 1:  # type: ignore[operator]
        raise ConfigError(f"{where} must be at least 1, got {value!r}")
    if (section, key) in ABOVE_ZERO and value <= 0:  # type: ignore[operator]
        raise ConfigError(f"{where} must be greater than 0, got {value!r}")
    if (section, key) in NON_NEGATIVE and value < 0:  # type: ignore[operator]
        raise ConfigError(f"{where} must not be negative, got {value!r}")
    if isinstance(value, str) and ("\r" in value or "\n" in value):
        raise ConfigError(f"{where} must be one line")
    return value


def _build_section(source: str, name: str, cls: type, raw: object) -> object:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(
                f"{source}: [{name}] has an unknown key {key!r} (known: {', '.join(sorted(known))})"
            )
        expected = hints[key]
        if isinstance(expected, types.UnionType):  # pragma: no cover - no optional keys yet
            expected = next(a for a in typing.get_args(expected) if a is not type(None))
        values[key] = _check_value(source, name, key, expected, value)
    return cls(**values)


def parse_config(text: str, source: str, base_dir: Path) -> Config:
    """Build a :class:`Config` from TOML text; every problem is a :class:`ConfigError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    sections = {}
    for name, raw in data.items():
        if name not in SECTIONS:
            raise ConfigError(
                f"{source}: unknown section [{name}] (known: {', '.join(sorted(SECTIONS))})"
            )
        sections[name] = _build_section(source, name, SECTIONS[name], raw)
    config = Config(source=source, base_dir=base_dir, **sections)
    check_database_url(source, config.database.url)
    for key in ADDRESS_KEYS:
        _check_address(source, key, getattr(config.newsletter, key))
    _check_values(config)
    return config


_LIST_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+")


def _check_values(config: Config) -> None:
    """Keys whose form is known: wrong ones are one line now, not a surprise later."""
    where = f"{config.source}:"
    nl = config.newsletter
    if nl.public_url:
        parts = urlsplit(nl.public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{where} [newsletter] public_url must be the https:// address where "
                f"`digest-mailer serve` is reached (e.g. https://digest.your-domain.org), "
                f"got {nl.public_url!r}"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"{where} [newsletter] public_url must have no ?query or #part")
        if "\\" in nl.public_url or "@" in parts.netloc or any(c.isspace() for c in nl.public_url):
            raise ConfigError(
                f"{where} [newsletter] public_url must be a plain address (no user@, "
                "backslash or spaces), got " + repr(nl.public_url)
            )
    if not _LIST_ID.fullmatch(nl.list_id) or len(nl.list_id) > 255:
        raise ConfigError(
            f"{where} [newsletter] list_id must be a dotted name such as "
            f"digest.your-domain.org (RFC 2919), got {nl.list_id!r}"
        )
    for section, key in (("smtp", "port"), ("inbox", "imap_port")):
        port = getattr(getattr(config, section), key)
        if not 1 <= port <= 65535:
            raise ConfigError(f"{where} [{section}] {key} must be 1 to 65535, got {port}")
    if not config.seed.list.strip():
        raise ConfigError(f'{where} [seed] list must name a list, e.g. "seed"')
    if config.dns.nameserver and not _nameserver_ok(config.dns.nameserver):
        raise ConfigError(
            f"{where} [dns] nameserver must be an IP address, optionally with a port "
            f'("127.0.0.1:5353"), got {config.dns.nameserver!r}'
        )
    if config.tracking.clicks and not nl.public_url:
        raise ConfigError(
            f"{where} [tracking] clicks = true needs [newsletter] public_url, the https:// "
            "address where `digest-mailer serve` answers the counted links (/r/…)"
        )


def _nameserver_ok(value: str) -> bool:
    host, port = value, "53"
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        host, _, port = value.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return port.isdigit() and 1 <= int(port) <= 65535


# The address keys of [newsletter]; reply_to and bounce_address may be empty.
ADDRESS_KEYS = ("from_address", "reply_to", "request_address", "bounce_address")
SQLITE_EXAMPLE = "sqlite:///subscribers/digest.db"
POSTGRES_EXAMPLE = "postgresql+psycopg://USER@HOST/DATABASE"


def _check_address(source: str, key: str, value: str) -> None:
    if not value and key in ("reply_to", "bounce_address"):
        return
    try:
        # the config's own addresses may be on reserved domains (.test) for trials
        validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ConfigError(
            f"{source}: [newsletter] {key} must be an email address such as "
            f"digest@your-domain.org, got {value!r} ({exc})"
        ) from None


def check_database_url(source: str, url: str) -> None:
    """Only the two back ends the project tests: SQLite files and PostgreSQL (psycopg 3)."""
    where = f"{source}: [database] url"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{where} must be a database URL such as {SQLITE_EXAMPLE}, got {url!r}"
        ) from None
    scheme = parsed.drivername
    if scheme in ("postgres", "postgresql") or scheme.startswith("postgres"):
        if scheme != "postgresql+psycopg":
            fixed = parsed.set(drivername="postgresql+psycopg").render_as_string(
                hide_password=True  # the message may be pasted anywhere
            )
            raise ConfigError(
                f"{where} uses {scheme}://, which this program does not load; write it as "
                f"{fixed!r} (the psycopg 3 driver; your password where *** is)"
            )
        return
    if scheme == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(
                f"{where} must name a SQLite file, such as {SQLITE_EXAMPLE}; "
                "an in-memory database would lose everything at exit"
            )
        if parsed.host or parsed.query:
            raise ConfigError(
                f"{where} must be sqlite:///PATH (three slashes, then the file's path, no "
                f"options), such as {SQLITE_EXAMPLE}; got {url!r}"
            )
        if url.rstrip().endswith(("/", "\\")) or parsed.database in (".", ".."):
            raise ConfigError(f"{where} names a folder, not a file: add the file's name")
        return
    raise ConfigError(
        f"{where}: {scheme}:// is not supported; use SQLite ({SQLITE_EXAMPLE}) "
        f"or PostgreSQL ({POSTGRES_EXAMPLE})"
    )


# Values config.example.toml ships with: mail must not go out under them.
EXAMPLE_POSTAL_ADDRESS = "Policy Institute, 1 Example Street, Springfield"
EXAMPLE_DOMAINS = ("example.org", "example.com", "example.net")


def placeholder_keys(config: Config) -> list[str]:
    """The keys still holding a value from ``config.example.toml`` (or the built-in
    defaults) that no real newsletter can send under: example.org addresses, the example
    postal address, an empty postal address."""
    found = []
    for key in ADDRESS_KEYS:
        value = getattr(config.newsletter, key)
        domain = value.rpartition("@")[2].strip().lower().rstrip(".")
        if value and any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS):
            found.append(f"[newsletter] {key} ({value})")
    list_id = config.newsletter.list_id.lower()
    if any(list_id == d or list_id.endswith("." + d) for d in EXAMPLE_DOMAINS):
        found.append(f"[newsletter] list_id ({config.newsletter.list_id})")
    postal = config.newsletter.postal_address.strip()
    if not postal:
        found.append("[newsletter] postal_address (empty; the law wants one in every footer)")
    elif postal == EXAMPLE_POSTAL_ADDRESS:
        found.append(f"[newsletter] postal_address ({postal!r} is the example)")
    return found


def refuse_placeholders(config: Config) -> None:
    """Before anything goes out: no example value may still be in place."""
    keys = placeholder_keys(config)
    if keys:
        raise ConfigError(
            f"{config.source}: set your own value for {'; '.join(keys)} before sending"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":  # not "localhost.": that one is asked of the DNS
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def sqlite_file(config: Config) -> Path | None:
    """The SQLite database file, or None for PostgreSQL."""
    url = make_url(config.database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def require_database_folder(config: Config) -> None:
    """A SQLite file whose folder is missing is a mistyped path, not a new database: only
    ``init`` creates it."""
    file = sqlite_file(config)
    if file is not None and not file.parent.is_dir():
        raise ConfigError(
            f"{config.source}: [database] url names {file}, whose folder {file.parent} "
            "does not exist; fix the path, or run `digest-mailer init` to create it"
        )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Find and read the configuration (see the module docstring for the lookup order)."""
    explicit = path is not None
    if path is None and os.environ.get(ENV_CONFIG):
        path, explicit = os.environ[ENV_CONFIG], True
    file = Path(path) if path is not None else Path.cwd() / DEFAULT_FILE
    if not file.exists():
        if explicit:
            raise ConfigError(f"config file {file} not found")
        return Config()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file} cannot be read: {exc}") from None
    return parse_config(text, str(file), file.resolve().parent)
