"""Checks on a composed issue before it is sent: errors stop a send, warnings are shown."""

import re
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

from digest_mailer.composer import UNSUBSCRIBE_PLACEHOLDER, ComposedIssue
from digest_mailer.config import Config
from digest_mailer.message import one_click_allowed
from digest_mailer.source import IssueSource

GMAIL_CLIP_BYTES = 102_000
WARN_BYTES = 90_000
SUBJECT_MAX = 78


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# URLs that run code or carry content of their own: never in an issue (mail clients
# block some; a web archive of the issue would not)
DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:")
_URL_IN_TEXT = re.compile(r"(?<![a-z0-9+.-])(?:javascript|vbscript):|data:[a-z]+/[a-z0-9.+-]+[;,]")
_CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]{0,200})")


def dangerous_url(value: str | None) -> bool:
    """Whether an attribute value is a javascript:, vbscript: or data: URL, however it is
    written (browsers drop whitespace and control characters inside a scheme; a draft's
    spaces reach the HTML percent-encoded)."""
    if not value:
        return False
    squeezed = "".join(c for c in unquote(value[:200])[:64] if c > " ").lower()
    return squeezed.startswith(DANGEROUS_SCHEMES)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.dangerous: list[str] = []
        self.links: list[tuple[str | None, str]] = []
        self.images: list[tuple[str | None, str | None]] = []
        self.scripts = 0
        self.stylesheets = 0
        self._href: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name, value in attrs:
            values = _CSS_URL.findall(value or "") if name == "style" else [value]
            if any(dangerous_url(v) for v in values):
                self.dangerous.append(f"<{tag} {name}={(value or '')[:60]!r}>")
        if tag == "a":
            self._href, self._text = a.get("href"), []
        elif tag == "img":
            self.images.append((a.get("src"), a.get("alt")))
            if self._text is not None and a.get("alt"):
                self._text.append(a["alt"] or "")
        elif tag == "script":
            self.scripts += 1
        elif tag == "link" and "stylesheet" in (a.get("rel") or "").lower():
            self.stylesheets += 1

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._text is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
            self._href, self._text = None, None


def _bad_href(href: str | None) -> str | None:
    """Why a link will not work in an email client, or None."""
    if href is None or not href.strip():
        return "has no address"
    href = href.strip()
    if href == UNSUBSCRIBE_PLACEHOLDER:
        return None
    if href.startswith("#"):
        return "points nowhere (#)"
    scheme = urlsplit(href).scheme.lower()
    if not scheme:
        return f"is relative ({href})"
    if scheme not in ("http", "https", "mailto"):
        return f"is not http(s) or mailto ({href})"
    return None


# A reader's own link pasted from a received copy: /u/TOKEN unsubscribes that reader,
# /c/TOKEN confirms; the issue (and its public archive) would hand it to everyone.
# Matched by shape: /u/<id in base 36>-<signature>, /c/<32 hex>.
_PERSONAL_LINK = re.compile(
    r"/u/[0-9a-z]{1,13}-[A-Za-z0-9_-]{16,64}(?![A-Za-z0-9_-])|/c/[0-9a-f]{32}(?![0-9a-f])"
)


def pasted_personal_data(source: IssueSource) -> list[tuple[str, str]]:
    """(code, message) for what a draft must never carry to every reader: the unsubscribe
    placeholder (it would become each reader's own link) or someone's personal link."""
    parts = [
        source.title, source.subject, source.preheader, source.body, source.footer_note,
        source.image, source.image_credit_url, *source.headlines, *source.details,
    ]  # fmt: skip
    found = []
    if any(UNSUBSCRIBE_PLACEHOLDER in p or "%25%25UNSUBSCRIBE_URL%25%25" in p for p in parts):
        found.append(
            (
                "placeholder-in-text",
                f"the draft holds {UNSUBSCRIBE_PLACEHOLDER}, which would become each reader's "
                "own unsubscribe link: remove it (the footer carries the link)",
            )
        )
    for part in parts:
        if match := _PERSONAL_LINK.search(part):
            found.append(
                (
                    "personal-link",
                    f"the draft holds someone's own link (…{match.group(0)[:40]}): whoever reads "
                    "the issue or its public archive could use it; remove it",
                )
            )
            break
    return found


def lint(composed: ComposedIssue) -> list[Finding]:
    findings: list[Finding] = []

    def error(code: str, message: str) -> None:
        findings.append(Finding("error", code, message))

    def warning(code: str, message: str) -> None:
        findings.append(Finding("warning", code, message))

    size = composed.html_bytes
    if size > GMAIL_CLIP_BYTES:
        error("html-too-large", f"HTML is {size:,} bytes; Gmail clips over {GMAIL_CLIP_BYTES:,}")
    elif size > WARN_BYTES:
        warning(
            "html-large",
            f"HTML is {size:,} bytes, close to Gmail's clipping limit of {GMAIL_CLIP_BYTES:,}",
        )
    for part, body in (("HTML", composed.html), ("text", composed.text)):
        if UNSUBSCRIBE_PLACEHOLDER not in body:
            error(
                "no-unsubscribe",
                f"the {part} template lacks the unsubscribe link ({{{{ unsubscribe_url }}}})",
            )
    for code, message in pasted_personal_data(composed.source):
        error(code, message)
    for text in composed.placeholder_links:
        warning(
            "placeholder-link",
            f"placeholder link {text!r} (#) was printed as plain text: add its address",
        )
    for _, level, code, message in sorted(composed.source.structure):
        findings.append(Finding(level, code, message))
    source = composed.source
    if not source.id and not source.volume:
        warning(
            "no-volume",
            f"no Vol: line: the issue id will be {source.issue_id_source} "
            "(add a Vol: line, id: in the front matter, or use --issue-id)",
        )
    if composed.other_subscribe_address:
        request = composed.request_address
        warning(
            "two-subscribe-addresses",
            f"the closing paragraph tells readers to write to {composed.other_subscribe_address},"
            f" but the footer and the request mailbox use {request}: set [newsletter] "
            f'request_address = "{composed.other_subscribe_address}" or change the paragraph',
        )
    if composed.dropped_credit:
        warning(
            "credit-without-image",
            f"image credit {composed.dropped_credit!r} has no image to credit and was left out",
        )
    collector = _Collector()
    collector.feed(composed.html)
    collector.close()
    for href, text in collector.links:
        if reason := _bad_href(href):
            warning("bad-link", f"link {text!r} {reason}")
    for src, alt in collector.images:
        if not alt or not alt.strip():
            warning("image-alt", f"image {src!r} has no alt text")
        if not src or not urlsplit(src).scheme:
            warning("image-src", f"image {src!r} has a relative address; use a full https:// URL")
    if collector.scripts:
        error("script", "the HTML contains <script>, which mail clients block")
    for where in collector.dangerous[:5]:
        error("dangerous-url", f"a javascript:, vbscript: or data: URL in {where}")
    if match := _URL_IN_TEXT.search(composed.text.lower()):
        error("dangerous-url", f"a {match.group(0).rstrip(';,')} URL in the text part")
    if collector.stylesheets:
        warning("external-css", "the HTML links an external stylesheet, which clients ignore")
    subject_length = len(composed.subject)
    if not composed.subject.strip():
        error("no-subject", "the issue has no subject")
    elif subject_length > SUBJECT_MAX:
        warning(
            "subject-long",
            f"subject is {subject_length} characters (over {SUBJECT_MAX}; clients cut it)",
        )
    if not composed.preheader:
        warning("no-preheader", "no preheader: add `preheader:` to the front matter")
    return findings


def lint_config(config: Config) -> list[Finding]:
    """What the configuration does to every issue."""
    findings = []
    url = config.newsletter.public_url
    if url and not one_click_allowed(url):
        findings.append(
            Finding(
                "warning",
                "one-click-needs-https",
                f"[newsletter] public_url is {url}: RFC 8058 one-click unsubscribe needs "
                "https, so mail goes out without List-Unsubscribe-Post",
            )
        )
    if config.tracking.clicks and url:
        link_domain = (urlsplit(url).hostname or "").lower()
        from_domain = config.newsletter.from_address.rpartition("@")[2].lower()
        if link_domain and not _same_organisation(link_domain, from_domain):
            findings.append(
                Finding(
                    "warning",
                    "click-domain",
                    f"[tracking] clicks sends every link through {link_domain}, which is not "
                    f"the From domain {from_domain}: mail filters may trust such links less",
                )
            )
    return findings


def _same_organisation(host: str, domain: str) -> bool:
    """``host`` is ``domain`` or one of its subdomains (a rough stand-in for DMARC's
    organisational domain, which needs the public suffix list)."""
    return host == domain or host.endswith("." + domain) or domain.endswith("." + host)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)
