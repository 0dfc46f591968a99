"""`digest-mailer doctor`: check a staff member's setup, one check at a time.

In order: the config (nothing else runs when it cannot load), the database, the signing
secret, SMTP, IMAP, the templates, and the DNS records receivers look at (DKIM, SPF,
DMARC and its alignment, MX). Each check is isolated: whatever goes wrong in one becomes
its own failed :class:`Check` with one sentence saying how to fix it, and the rest still
run. A check that does not apply (IMAP or DKIM not configured) is *skipped*: it passes
and its detail says why.

Nothing is changed: no database file is created, no IMAP folder, no message is sent.
"""

import dataclasses
import ipaddress
import os
import smtplib
import ssl
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.resolver
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from digest_mailer import composer, db
from digest_mailer.config import Config, load_config, placeholder_keys, sqlite_file
from digest_mailer.errors import ConfigError, DigestMailerError, StoreError
from digest_mailer.inbox.sources import IMAPSource
from digest_mailer.signing import DkimSigner, dns_txt_value
from digest_mailer.source import parse_issue
from digest_mailer.tokens import signing_secret
from digest_mailer.transport import refuse_clear_text_login
from digest_mailer.welcome import sample_welcome

STRONG_SECRET_CHARS = 32
DNS_LIFETIME = 2.0  # seconds for one lookup, retries included
SAMPLE_ISSUE = """# Doctor Sample
Vol: 0.1
## Headlines:
- A headline with [a link](https://www.example.net/report)
## Details:
- **Sample.** One paragraph, rendered to check the templates.
"""


@dataclass(frozen=True)
class Check:
    """One line of the report. ``fix`` says what to do when ``ok`` is false; a skipped
    check is ok. ``fatal``: the config could not load, so nothing else ran."""

    check: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False
    fatal: bool = False

    def to_json(self) -> dict[str, object]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def exit_code(checks: list[Check]) -> int:
    """2 when the config cannot load (as for every ConfigError), 1 when a check failed."""
    if any(c.fatal for c in checks):
        return ConfigError.exit_code
    return 0 if all(c.ok for c in checks) else 1


class _Fail(Exception):
    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


class _Skip(Exception):
    pass


@dataclass
class _Context:
    config: Config
    _dns: "_Dns | None" = None
    dmarc_tags: dict[str, str] = field(default_factory=dict)
    spf_found: bool = False  # the SPF check found one record

    @property
    def dns(self) -> "_Dns":
        if self._dns is None:
            self._dns = _Dns(self.config)
        return self._dns

    def domain(self, *, envelope: bool = False) -> str:
        """The From domain; with ``envelope`` the one bounces go to and SPF is checked for
        (bounce_address, else from_address)."""
        nl = self.config.newsletter
        key = "bounce_address" if envelope and nl.bounce_address else "from_address"
        domain = getattr(nl, key).rpartition("@")[2].strip(" .").lower()
        if not domain:
            fix = f"set [newsletter] {key} in {self.config.source} to an address at your domain"
            raise _Fail(f"[newsletter] {key} has no domain", fix)
        return domain


CheckFunction = Callable[[_Context], str]
CHECKS: list[tuple[str, CheckFunction, str]] = []  # name, check, fix for other errors


def _check(name: str, fix: str) -> Callable[[CheckFunction], CheckFunction]:
    def register(function: CheckFunction) -> CheckFunction:
        CHECKS.append((name, function, fix))
        return function

    return register


def run_checks(config_path: str | os.PathLike[str] | None = None) -> list[Check]:
    """Every check, in order; only a config that cannot load stops the rest."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        if "not found" in str(exc):
            fix = "give the path of your config file, or copy config.example.toml there"
        else:
            fix = "correct the value named above (config.example.toml describes every key)"
        return [Check("config", False, str(exc), fix, fatal=True)]
    if config.source == Config.source:  # no file: fixes name the file to make
        config = dataclasses.replace(
            config, source="config.toml (none was found: copy config.example.toml)"
        )
    context = _Context(config)
    return [_run(name, check, fix, context) for name, check, fix in CHECKS]


def _run(name: str, check: CheckFunction, fix: str, context: _Context) -> Check:
    try:
        return Check(name, True, check(context))
    except _Skip as exc:
        return Check(name, True, f"skipped: {exc}", skipped=True)
    except _Fail as exc:
        return Check(name, False, exc.detail, exc.fix)
    except DigestMailerError as exc:
        return Check(name, False, str(exc), fix)
    except Exception as exc:
        if os.environ.get("DIGEST_MAILER_DEBUG"):
            traceback.print_exc()
        detail = f"unexpected error ({type(exc).__name__}: {exc})"
        return Check(name, False, detail, f"{fix} (DIGEST_MAILER_DEBUG=1 shows the traceback)")


# --------------------------------------------------------------------------- local setup


@_check("config", "correct the value named above")
def check_config(context: _Context) -> str:
    config = context.config
    found = placeholder_keys(config)  # "[section] key (why)"
    if found:
        keys = ", ".join(entry.partition(" (")[0] for entry in found)
        raise _Fail(
            f"{config.source}: example values still in place: {'; '.join(found)}",
            f"set {keys} in {config.source} to your newsletter's own values",
        )
    return f"{config.source} loaded"


@_check("database", "run `digest-mailer init`")
def check_database(context: _Context) -> str:
    config = context.config
    where = make_url(config.database_url).render_as_string(hide_password=True)
    init = "run `digest-mailer init`"
    file = sqlite_file(config)
    if file is not None and not file.exists():  # connecting would create an empty file
        raise _Fail(f"the database {where} does not exist", f"{init} to create it")
    engine = db.make_engine(config.database_url)
    try:
        current, head = db.current_revision(engine), db.head_revision(engine)
    except (StoreError, SQLAlchemyError) as exc:
        raise _Fail(
            str(exc).strip().splitlines()[0],
            f"check [database] url in {config.source} and that the database server runs and "
            "accepts this login",
        ) from None
    finally:
        engine.dispose()
    if current is None:
        raise _Fail(f"the database {where} is not initialised", f"{init} to create its tables")
    if current != head:
        raise _Fail(
            f"the database {where} is at revision {current}, this version needs {head}",
            f"back up the database, then {init} to upgrade it",
        )
    return f"{where} is at the newest revision ({head})"


@_check("secret", "set the environment variable named above")
def check_secret(context: _Context) -> str:
    config = context.config
    var = config.newsletter.secret_env
    if not var:
        fix = f'set [newsletter] secret_env = "DIGEST_MAILER_SECRET" in {config.source}'
        raise _Fail("[newsletter] secret_env names no environment variable", fix)
    fix = (
        f"set {var} to at least {STRONG_SECRET_CHARS} random characters, e.g. "
        f"`export {var}=$(openssl rand -hex 32)`"
    )
    try:
        signing_secret(config)  # set, and long enough to sign with at all
    except ConfigError as exc:
        raise _Fail(str(exc), fix) from None
    secrets = os.environ[var].split()  # several: the first signs, all verify (rotation)
    length = min(len(secret) for secret in secrets)
    if length < STRONG_SECRET_CHARS:
        raise _Fail(
            f"a secret in {var} has {length} characters; use at least {STRONG_SECRET_CHARS}",
            f"{fix}; links in mail already sent stop working when it changes",
        )
    more = f" and {len(secrets) - 1} older one(s) that still verify" if len(secrets) > 1 else ""
    return f"{var} holds a secret of {len(secrets[0])} characters{more}"


@_check("smtp", "check the [smtp] section")
def check_smtp(context: _Context) -> str:
    config = context.config
    s = config.smtp
    where = f"{s.host}:{s.port}"
    password = ""
    try:
        refuse_clear_text_login(config)
    except ConfigError as exc:
        raise _Fail(
            str(exc), 'set [smtp] security = "starttls" (port 587) or "ssl" (465)'
        ) from None
    if s.username:
        try:
            password = config.secret("smtp", "password_env")
        except ConfigError as exc:
            var = s.password_env or "the variable [smtp] password_env names"
            raise _Fail(str(exc), f"set {var} to the SMTP password of {s.username}") from None
    tls = ssl.create_default_context()  # honours SSL_CERT_FILE
    if not s.verify_certificates:
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    reach = (
        f"check [smtp] host, port and security in {config.source}, and that the server "
        "runs and this machine may reach it"
    )
    client: smtplib.SMTP | None = None
    try:
        local = config.newsletter.from_address.rpartition("@")[2] or "localhost"
        if s.security == "ssl":
            client = smtplib.SMTP_SSL(s.host, s.port, local, timeout=s.timeout, context=tls)
        else:
            client = smtplib.SMTP(s.host, s.port, local, timeout=s.timeout)
        client.ehlo_or_helo_if_needed()  # SMTPHeloError when refused
        notes = ["no TLS ([smtp] security = none)"]
        if s.security == "starttls":
            if not client.has_extn("starttls"):
                raise _Fail(
                    f"{where} does not offer STARTTLS",
                    "use the server's submission port (587) with security = starttls, or "
                    'port 465 with security = "ssl"',
                )
            client.starttls(context=tls)
            client.ehlo_or_helo_if_needed()
        if s.security != "none":
            verified = "verified" if s.verify_certificates else "NOT verified"
            notes = [f"{client.sock.version()} ({s.security}), certificate {verified}"]  # type: ignore[union-attr]
        if s.username:
            _login(client, where, s.username, password, s.password_env)
            notes.append(f"logged in as {s.username}")
        greeting = _text((client.ehlo_resp or b"").split(b"\n")[0])[:40]
        offers = " ".join(sorted(k.upper() for k in client.esmtp_features))
        return f"{where} ({greeting}): {'; '.join(notes)}; offers {offers}"
    except ssl.SSLCertVerificationError as exc:
        msg = exc.verify_message or str(exc)
        fix = (
            "set [smtp] host to the name the certificate is issued for"
            if "mismatch" in msg.lower()
            else "install the CA that issued the server's certificate (or point SSL_CERT_FILE "
            "at a bundle with it); verify_certificates = false is for test servers only"
        )
        raise _Fail(f"the TLS certificate of {where} could not be verified: {msg}", fix) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise _Fail(f"SMTP with {where} failed: {type(exc).__name__}: {exc}", reach) from None
    finally:
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


def _login(client: smtplib.SMTP, where: str, user: str, password: str, env: str) -> None:
    try:
        client.login(user, password)
    except smtplib.SMTPNotSupportedError:
        fix = "remove [smtp] username or use a server that accepts logins"
        raise _Fail(f"{where} offers no AUTH", fix) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise _Fail(
            f"{where} refused the login for {user}: {exc.smtp_code} {_text(exc.smtp_error)}",
            f"check [smtp] username and the password in {env}",
        ) from None


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return " ".join(text.split())


@_check("imap", "check the [inbox] section")
def check_imap(context: _Context) -> str:
    config = context.config
    box = config.inbox
    if not box.imap_host:
        raise _Skip("IMAP is not configured ([inbox] imap_host is empty)")
    try:
        source = IMAPSource(config, read_only=True)  # logs in and selects the folder
    except DigestMailerError as exc:
        msg = str(exc)
        if "certificate" in msg:
            fix = "set [inbox] imap_ca_file to the CA that issued the server's certificate"
        elif "cannot connect" in msg:
            fix = f"check [inbox] imap_host, imap_port and imap_security in {config.source}"
        elif "cannot open the folder" in msg:
            fix = f"set [inbox] imap_folder to a folder that exists (now {box.imap_folder!r})"
        elif isinstance(exc, ConfigError):
            fix = "set the key or environment variable named above"
        else:
            fix = f"check [inbox] imap_user and the password in {box.imap_password_env}"
        raise _Fail(msg, fix) from None
    source.close()
    return f"logged in to {source.name}"


@_check("templates", "correct the template named above, or empty [newsletter] templates")
def check_templates(context: _Context) -> str:
    config = context.config
    folder = config.newsletter.templates
    where = f"the templates in {config.path(folder)}" if folder else "the shipped templates"
    composed = composer.compose(parse_issue(SAMPLE_ISSUE, config.path("doctor-sample")), config)
    welcome = ""
    if config.newsletter.welcome:  # the welcome mail's pair too, when it is sent
        sample_welcome(config)
        welcome = ", and so does the welcome mail"
    return f"a sample issue renders with {where} ({len(composed.html)} bytes of HTML){welcome}"


# --------------------------------------------------------------------------- DNS


class _Dns:
    """TXT and MX lookups with a short lifetime. A name without such records gives an
    empty list; a resolver that fails gives a :class:`_Fail` (and after a timeout, every
    later lookup fails at once)."""

    def __init__(self, config: Config) -> None:
        ns = config.dns.nameserver.strip()
        self.where = ns or "the system resolver"
        self.fix = (
            f"make sure {self.where} answers DNS queries from this machine, or set [dns] "
            f"nameserver in {config.source} to a resolver that does"
        )
        self.down = ""
        try:
            if ns:
                host, port = _split_nameserver(ns)
                self.resolver = dns.resolver.Resolver(configure=False)
                self.resolver.nameservers, self.resolver.port = [host], port
            else:
                self.resolver = dns.resolver.Resolver()
        except (ValueError, dns.exception.DNSException) as exc:
            raise _Fail(
                f"cannot use {self.where} as the DNS resolver: {exc}",
                'set [dns] nameserver to an IP address, optionally with a port ("IP:PORT")',
            ) from None
        self.resolver.timeout = self.resolver.lifetime = DNS_LIFETIME

    def query(self, name: str, rtype: str) -> list[object]:
        if self.down:
            raise _Fail(self.down, self.fix)
        try:
            return list(self.resolver.resolve(name, rtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            self.down = f"no answer from {self.where} within {DNS_LIFETIME:g} s"
            raise _Fail(f"{self.down} (looking up {name} {rtype})", self.fix) from None
        except dns.exception.DNSException as exc:
            detail = f"the DNS lookup of {name} {rtype} through {self.where} failed: {exc}"
            raise _Fail(detail, self.fix) from None

    def txt(self, name: str) -> list[str]:
        records = self.query(name, "TXT")
        return [b"".join(r.strings).decode("utf-8", "replace") for r in records]  # type: ignore[attr-defined]


def _split_nameserver(value: str) -> tuple[str, int]:
    host, port = value, "53"  # an IPv6 address takes the default port
    if value.count(":") == 1:
        host, port = value.split(":")
    ipaddress.ip_address(host)  # a ValueError for a name
    return host, int(port)


def _tags(record: str) -> dict[str, str]:
    pairs = (part.partition("=") for part in record.split(";"))
    return {k.strip().lower(): "".join(v.split()) for k, sep, v in pairs if sep}


def _organisational(domain: str) -> str:
    return ".".join(domain.split(".")[-2:])


def _within(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


DKIM_FIX = (
    "set [dkim] selector, domain and private_key_file to a 2048-bit RSA key file of mode "
    "600 (`digest-mailer dkim keygen` makes one)"
)


@_check("dkim", DKIM_FIX)
def check_dkim(context: _Context) -> str:
    signer = DkimSigner.from_config(context.config)
    if signer is None:
        raise _Skip("DKIM is not configured ([dkim] selector, domain, private_key_file)")
    name = f"{signer.selector}._domainkey.{signer.domain}"
    key_file = context.config.dkim.private_key_file
    expected = dns_txt_value(signer.key.public_key())
    fix = f'publish a TXT record at {name}: "{expected}"'
    records = [r for r in context.dns.txt(name) if _tags(r).get("v", "DKIM1") == "DKIM1"]
    if len(records) != 1:
        raise _Fail(f"{len(records) or 'no'} DKIM records (TXT) at {name}", fix)
    key = _tags(records[0]).get("p", "")
    if not key:
        raise _Fail(f"the DKIM record at {name} has no key (p= is empty or missing)", fix)
    if key != _tags(expected)["p"]:
        raise _Fail(f"{name} holds another public key than the one of {key_file}", fix)
    return f"{name} publishes the public key of {key_file}"


@_check("spf", "publish the record named above")
def check_spf(context: _Context) -> str:
    domain = context.domain(envelope=True)
    records = [r for r in context.dns.txt(domain) if r.lower().split(" ")[0] == "v=spf1"]
    host = context.config.smtp.host
    try:
        mechanism = f"ip{ipaddress.ip_address(host).version}:{host}"
    except ValueError:
        mechanism = "mx" if host in ("localhost", "") else f"a:{host}"
    if not records:
        raise _Fail(
            f'no SPF record (TXT "v=spf1 …") at {domain}, the envelope domain',
            f'add a TXT record at {domain} naming your sending servers, e.g. "v=spf1 '
            f'{mechanism} ~all"',
        )
    if len(records) > 1:
        detail = f"{len(records)} SPF records at {domain}; receivers treat that as an error"
        raise _Fail(detail, "merge them into one TXT record")
    context.spf_found = True
    return f"{domain}: {records[0][:60]}"


@_check("dmarc", "publish the record named above")
def check_dmarc(context: _Context) -> str:
    domain = context.domain()
    org = _organisational(domain)
    for candidate in dict.fromkeys([domain, org]):
        txt = context.dns.txt(f"_dmarc.{candidate}")
        records = [r for r in txt if _tags(r).get("v", "").upper() == "DMARC1"]
        if records:
            context.dmarc_tags = _tags(records[0])
            return f"_dmarc.{candidate}: {records[0][:60]}"
    raise _Fail(
        f'no DMARC record (TXT "v=DMARC1; …") at _dmarc.{domain}'
        + (f" or _dmarc.{org}" if org != domain else ""),
        f'add a TXT record at _dmarc.{org}: "v=DMARC1; p=none; rua=mailto:dmarc@{org}"',
    )


@_check("dmarc-alignment", "sign with the From domain or send from its envelope domain")
def check_alignment(context: _Context) -> str:
    """DKIM d= or the SPF (envelope) domain within the From domain's organisational
    domain; the From domain itself when the DMARC record asks for strict alignment."""
    if not context.dmarc_tags:
        raise _Skip("no DMARC record was found to align with (see the dmarc line)")
    dkim = context.config.dkim
    domain, envelope = context.domain(), context.domain(envelope=True)
    org = _organisational(domain)
    signed = dkim.domain.lower() if dkim.selector and dkim.private_key_file else ""
    strict = {k: context.dmarc_tags.get(k, "r") == "s" for k in ("adkim", "aspf")}
    aligned = []
    if signed and (signed == domain if strict["adkim"] else _within(signed, org)):
        aligned.append(f"DKIM d={signed}")
    spf_aligned = envelope == domain if strict["aspf"] else _within(envelope, org)
    if spf_aligned and context.spf_found:  # an SPF record that was not found aligns nothing
        aligned.append(f"SPF {envelope}")
    if not aligned:
        mode = "strict" if any(strict.values()) else "relaxed"
        raise _Fail(
            f"neither DKIM (d={signed or 'not signed'}) nor SPF ({envelope}) aligns with the "
            f"From domain {domain} ({mode} alignment), so DMARC fails",
            f'set [dkim] domain = "{domain}" (and publish its key) or a bounce_address at {domain}',
        )
    return f"aligned with the From domain {domain}: {', '.join(aligned)}"


@_check("mx", "publish the record named above")
def check_mx(context: _Context) -> str:
    domain = context.domain(envelope=True)
    nl = context.config.newsletter
    address = nl.bounce_address or nl.from_address
    fix = f"add an MX record for {domain} naming the server that receives mail for {address}"
    records = context.dns.query(domain, "MX")
    hosts = sorted((r.preference, str(r.exchange)) for r in records)  # type: ignore[attr-defined]
    if not hosts:
        raise _Fail(f"{domain} has no MX record: bounce reports to {address} cannot arrive", fix)
    if all(host == "." for _, host in hosts):
        raise _Fail(f"{domain} has a null MX record: it accepts no mail", fix)
    return f"{domain}: " + ", ".join(f"{p} {h}" for p, h in hosts)
