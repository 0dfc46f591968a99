"""Composing an issue: source text in, email-safe HTML with inlined CSS and a plain-text
part out, both from the same Markdown, deterministic to the byte.

The unsubscribe link is left as :data:`UNSUBSCRIBE_PLACEHOLDER`; the sender substitutes
it per recipient without re-rendering or re-inlining anything. With ``[tracking] clicks``
the http(s) links of the issue become counted ``/r/`` links, the same for every recipient
(:mod:`digest_mailer.clicks.links`); the archive renders the links as written.
"""

import hashlib
import logging
import re
import textwrap
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markdown_it.token import Token
from premailer import Premailer

from digest_mailer.addresses import address_key, find_addresses
from digest_mailer.archive.paths import archive_url
from digest_mailer.clicks.links import LinkTracker
from digest_mailer.config import Config
from digest_mailer.errors import ConfigError, InputError, TemplateError
from digest_mailer.source import IssueSource, read_issue
from digest_mailer.tokens import signing_secret

UNSUBSCRIBE_PLACEHOLDER = "%%UNSUBSCRIBE_URL%%"
PLACEHOLDER_HREFS = ("", "#")
TEXT_WIDTH = 78
TEMPLATE_NAMES = ("base.html.j2", "issue.html.j2", "footer.html.j2", "issue.txt.j2")


@dataclass
class ComposedIssue:
    """What the sender needs: subject, HTML, text, and the fingerprint of all three."""

    source: IssueSource
    subject: str
    preheader: str
    html: str
    text: str
    placeholder_links: list[str] = field(default_factory=list)
    dropped_credit: str = ""  # an image credit with no image, left out
    # an address the closing paragraph tells readers to write to, when it is not the
    # request address (two different instructions for subscribing)
    other_subscribe_address: str = ""
    request_address: str = ""
    # [tracking] clicks: the URL of counted link n at index n-1 (empty: links as written),
    # and the text part with the links as written (the archive's)
    links: list[str] = field(default_factory=list)
    original_text: str = ""

    @property
    def issue_id(self) -> str:
        return self.source.issue_id

    @property
    def fingerprint(self) -> str:
        """SHA-256 of subject, HTML and text before personalisation."""
        digest = hashlib.sha256()
        for part in (self.subject, self.html, self.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


# --------------------------------------------------------------------------- Markdown


def _markdown() -> MarkdownIt:
    # Raw HTML in the source is shown as text, never passed through.
    return MarkdownIt("commonmark", {"html": False, "typographer": False})


class Renderer:
    """Renders Markdown to HTML and to plain text, collecting link references for the text.

    Placeholder links (``[text](#)``) keep their text and lose the link; each is noted.
    With a ``tracker`` ([tracking] clicks), http(s) links become counted ``/r/`` links.
    """

    def __init__(self, tracker: LinkTracker | None = None) -> None:
        self.md = _markdown()
        self.links: list[str] = []
        self.placeholders: list[str] = []
        self.tracker = tracker

    # -- HTML
    def inline_html(self, source: str) -> str:
        tokens = self.md.parseInline(source)
        for token in tokens:
            token.children = self._drop_placeholders(token.children or [])
        return self.md.renderer.render(tokens, self.md.options, {})

    def block_html(self, source: str) -> str:
        tokens = self.md.parse(source)
        for token in tokens:
            if token.type == "inline":
                token.children = self._drop_placeholders(token.children or [])
        return self.md.renderer.render(tokens, self.md.options, {})

    def _drop_placeholders(self, children: list[Token]) -> list[Token]:
        kept: list[Token] = []
        depth = 0
        for i, child in enumerate(children):
            if child.type == "link_open" and (child.attrGet("href") or "").strip() in (
                PLACEHOLDER_HREFS
            ):
                text = _link_text(children, i)
                if text not in self.placeholders:
                    self.placeholders.append(text)
                depth += 1
                continue
            if child.type == "link_close" and depth:
                depth -= 1
                continue
            if child.type == "link_open" and self.tracker is not None:
                child.attrSet("href", self.tracker.url(child.attrGet("href") or ""))
            kept.append(child)
        return kept

    # -- plain text
    def inline_text(self, source: str) -> str:
        tokens = self.md.parseInline(source)
        return "".join(self._text(t.children or []) for t in tokens).strip()

    def _text(self, children: list[Token]) -> str:
        out: list[str] = []
        href_stack: list[str | None] = []
        for i, child in enumerate(children):
            kind = child.type
            if kind in ("text", "code_inline"):
                out.append(child.content)
            elif kind in ("softbreak", "hardbreak"):
                out.append(" " if kind == "softbreak" else "\n")
            elif kind == "image":
                out.append(child.content or child.attrGet("alt") or "")
            elif kind == "link_open":
                href = (child.attrGet("href") or "").strip()
                if href in PLACEHOLDER_HREFS:
                    text = _link_text(children, i)
                    if text not in self.placeholders:
                        self.placeholders.append(text)
                    href_stack.append(None)
                else:
                    href_stack.append(href)
            elif kind == "link_close":
                href = href_stack.pop() if href_stack else None
                if href:
                    label = out[-1] if out else ""
                    target = self.tracker.url(href) if self.tracker is not None else href
                    if target == href and href.removeprefix("mailto:") == label:
                        continue  # a bare address needs no reference (unless counted)
                    if target not in self.links:
                        self.links.append(target)
                    out.append(f" [{self.links.index(target) + 1}]")
        return "".join(out)

    def block_text(self, source: str) -> str:
        """Block Markdown as wrapped plain text: headings, paragraphs, lists, quotes."""
        tokens = self.md.parse(source)
        blocks: list[str] = []
        lists: list[list[int]] = []  # stack of [ordered, counter]
        prefix_quote = 0
        heading: str | None = None
        item_first = False
        for token in tokens:
            kind = token.type
            if kind == "heading_open":
                heading = token.tag
            elif kind == "heading_close":
                heading = None
            elif kind in ("bullet_list_open", "ordered_list_open"):
                lists.append([kind == "ordered_list_open", int(token.attrGet("start") or 1) - 1])
            elif kind in ("bullet_list_close", "ordered_list_close"):
                lists.pop()
            elif kind == "list_item_open":
                lists[-1][1] += 1
                item_first = True
            elif kind == "blockquote_open":
                prefix_quote += 1
            elif kind == "blockquote_close":
                prefix_quote -= 1
            elif kind == "hr":
                blocks.append("-" * 20)
            elif kind in ("fence", "code_block"):
                blocks.append(token.content.rstrip("\n"))
            elif kind == "inline":
                text = self._text(token.children or [])
                quote = "> " * prefix_quote
                if heading:
                    line = text.upper() if heading in ("h1", "h2") else text
                    blocks.append(quote + line)
                elif lists:
                    indent = "  " * (len(lists) - 1)
                    ordered, counter = lists[-1]
                    marker = f"{counter}. " if ordered else "- "
                    if item_first:
                        blocks.append(wrap(text, quote + indent + marker, quote + indent + "  "))
                        item_first = False
                    else:
                        pad = quote + indent + " " * len(marker)
                        blocks.append(wrap(text, pad, pad))
                else:
                    blocks.append(wrap(text, quote, quote))
        return "\n\n".join(blocks)

    def references(self) -> str:
        return "\n".join(f"[{i}] {href}" for i, href in enumerate(self.links, 1))


def _link_text(children: list[Token], start: int) -> str:
    parts = []
    for child in children[start + 1 :]:
        if child.type == "link_close":
            break
        parts.append(child.content)
    return "".join(parts)


def wrap(text: str, first: str = "", rest: str = "", width: int = TEXT_WIDTH) -> str:
    """Wrap at ``width`` without breaking words or URLs; keep hard line breaks."""
    lines = []
    for n, paragraph in enumerate(text.split("\n")):
        lines.append(
            textwrap.fill(
                " ".join(paragraph.split()),
                width=width,
                initial_indent=first if n == 0 else rest,
                subsequent_indent=rest,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or (first if n == 0 else rest).rstrip()
        )
    return "\n".join(lines)


def plain_inline(source: str) -> str:
    """Inline Markdown as one line of plain text (for subjects and preheaders)."""
    text = Renderer().inline_text(source)
    return re.sub(r" \[\d+\]", "", " ".join(text.split()))


# --------------------------------------------------------------------------- templates


def default_templates() -> Path:
    return Path(str(files("digest_mailer.default_templates")))


def template_environment(config: Config) -> jinja2.Environment:
    """HTML templates autoescaped, text templates not; undefined names are errors.

    A staff-owned folder (``[newsletter] templates``) comes first; any template it does
    not have falls back to the shipped one.
    """
    folders = []
    if config.newsletter.templates:
        folder = config.path(config.newsletter.templates)
        if not folder.is_dir():
            raise TemplateError(f"{config.source}: [newsletter] templates: no folder {folder}")
        folders.append(str(folder))
    folders.append(str(default_templates()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap"] = wrap
    return env


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render one template; every template problem is one :class:`TemplateError` line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise TemplateError(f"{where} line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {exc.name} not found") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{_template_location(exc, name)}: {exc.message}") from None
    except Exception as exc:  # a filter or test failing inside the template
        raise TemplateError(f"{_template_location(exc, name)}: {exc}") from None


def _template_location(exc: BaseException, name: str) -> str:
    tb = exc.__traceback__
    where = name
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            where = f"{filename} line {tb.tb_lineno}"
        tb = tb.tb_next
    return where


# --------------------------------------------------------------------------- compose


def default_subject(source: IssueSource) -> str:
    title = plain_inline(source.title) or "Newsletter"
    parts = [title]
    if source.volume:
        parts[0] = f"{title}, Vol {source.volume}"
    if source.date:
        parts.append(source.date)
    return " — ".join(parts)


def one_line(value: str) -> str:
    """Header text (and the preheader) on one line: no CR, LF or other control characters,
    so nothing can be injected into a header."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def build_context(
    source: IssueSource, config: Config, tracker: LinkTracker | None = None
) -> tuple[dict[str, Any], Renderer]:
    """What the templates are rendered with; ``tracker``: links counted (none: as written,
    as the archive shows them)."""
    html = Renderer(tracker)
    text = Renderer(tracker)
    nl = config.newsletter
    if not source.title:
        source.title = nl.title
    subject = one_line(source.subject or default_subject(source))
    preheader = one_line(plain_inline(source.preheader)) if source.preheader else ""
    if not preheader and source.headlines:
        joined = "; ".join(plain_inline(h) for h in source.headlines)
        preheader = joined if len(joined) <= 140 else joined[:139].rsplit(" ", 1)[0] + "…"
    request = nl.request_address
    credit_url = source.image_credit_url
    if source.image and source.image_credit and not credit_url.startswith(("http://", "https://")):
        if credit_url:  # a placeholder (#) or relative address: plain text, and a warning
            html.placeholders.append(source.image_credit)
        credit_url = ""
    if tracker is not None and source.image and source.image_credit and credit_url:
        credit_url = tracker.url(credit_url)
    note_addresses = [address_key(a) for a in find_addresses(source.footer_note)]
    context: dict[str, Any] = {
        "lang": nl.language,
        "newsletter": nl.title,
        "subject": subject,
        "preheader": preheader,
        "title": plain_inline(source.title),
        "volume": source.volume,
        "date": source.date,
        "image": source.image,
        "image_alt": source.image_alt,
        # a credit without an image credits nothing; a placeholder address (#) is no link
        "image_credit": source.image_credit if source.image else "",
        "image_credit_url": credit_url,
        "intro_html": html.block_html(source.body) if source.is_digest and source.body else "",
        "body_html": html.block_html(source.body) if not source.is_digest else "",
        "headlines_html": [html.inline_html(h) for h in source.headlines],
        "details_html": [html.inline_html(d) for d in source.details],
        "footer_note_html": html.inline_html(_linkify_addresses(source.footer_note)),
        "request_address": request,
        # the closing paragraph already says where to write: the footer does not repeat it
        "subscribe_in_note": address_key(request) in note_addresses,
        "subscribe_url": f"mailto:{request}?subject=subscribe",
        "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER,
        "postal_address": nl.postal_address,
        "from_name": nl.from_name,
        "view_url": "",  # "View in your browser": set by compose() for a published issue
    }
    # The text part, rendered in reading order so link references number in that order.
    context["intro_text"] = text.block_text(source.body) if source.is_digest and source.body else ""
    context["body_text"] = text.block_text(source.body) if not source.is_digest else ""
    context["headlines_text"] = [text.inline_text(h) for h in source.headlines]
    context["details_text"] = [text.inline_text(d) for d in source.details]
    context["footer_note_text"] = text.inline_text(_linkify_addresses(source.footer_note))
    context["references"] = text.references()
    return context, html


EMAIL_IN_TEXT_RE = re.compile(r"(?<![\w.<\[(/:@-])([\w.+-]+@[\w-]+(?:\.[\w-]+)+)(?![\w\]>)@-])")


def _other_subscribe_address(source: IssueSource, config: Config) -> str:
    request = address_key(config.newsletter.request_address)
    found = [a for a in find_addresses(source.footer_note) if address_key(a) != request]
    mentions_request = any(address_key(a) == request for a in find_addresses(source.footer_note))
    return found[0] if found and not mentions_request else ""


def _linkify_addresses(text: str) -> str:
    """Bare addresses in the closing note become mailto links (as mail clients would)."""
    return EMAIL_IN_TEXT_RE.sub(r"[\1](mailto:\1)", text)


def inline_css(html: str) -> str:
    """premailer: CSS into style attributes; @media rules stay in a <style> block; classes
    stay, since the narrow-screen rules select on them."""
    try:
        return Premailer(
            html,
            remove_classes=False,
            strip_important=False,
            keep_style_tags=False,
            cssutils_logging_level=logging.CRITICAL,
            allow_network=False,
            disable_validation=True,
            disable_leftover_css=False,
        ).transform(pretty_print=True)
    except Exception as exc:  # premailer raises plain exceptions on broken CSS/HTML
        raise TemplateError(f"cannot inline the CSS: {exc}") from None


def _text_part(env: jinja2.Environment, context: dict[str, Any]) -> str:
    text = render_template(env, "issue.txt.j2", context)
    # no trailing blanks, except in the signature delimiter "-- " that mail clients know
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    text = "\n".join("-- " if line == "--" else line for line in lines) + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def _link_secret(config: Config) -> bytes:
    try:
        return signing_secret(config)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc} (with [tracking] clicks on, it signs the issue's links)"
        ) from None


def compose(
    source: IssueSource, config: Config, *, archive: bool = True, secret: bytes | None = None
) -> ComposedIssue:
    """The issue as it is sent. ``archive`` (not ``send --no-archive``): with
    ``[newsletter] public_url`` set, the message links to its archive page ("View in your
    browser", the same link for every recipient, with no token). With ``[tracking]
    clicks``, its http(s) links are counted ``/r/`` links signed with ``secret`` (by
    default the one ``[newsletter] secret_env`` names), the same for every recipient."""
    env = template_environment(config)
    tracker = None
    if config.tracking.clicks:
        tracker = LinkTracker(
            config.newsletter.public_url, secret or _link_secret(config), source.issue_id
        )
    context, html_renderer = build_context(source, config, tracker)
    if archive:
        context["view_url"] = archive_url(config.newsletter.public_url, source.issue_id)
    html = inline_css(render_template(env, "issue.html.j2", context))
    text = original_text = _text_part(env, context)
    if tracker is not None:  # the links as written, for the archive
        as_written, _ = build_context(source, config)
        as_written["view_url"] = context["view_url"]
        original_text = _text_part(env, as_written)
    return ComposedIssue(
        source=source,
        subject=context["subject"],
        preheader=context["preheader"],
        html=html,
        text=text,
        placeholder_links=html_renderer.placeholders,
        dropped_credit=source.image_credit if source.image_credit and not source.image else "",
        other_subscribe_address=_other_subscribe_address(source, config),
        request_address=config.newsletter.request_address,
        links=tracker.links if tracker is not None else [],
        original_text=original_text,
    )


def compose_file(
    path: Path,
    config: Config,
    *,
    issue_id: str | None = None,
    encoding: str | None = None,
    archive: bool = True,
) -> ComposedIssue:
    """Read and compose ``path``; ``issue_id`` (``--issue-id``) overrides the id the file
    gives (front matter ``id``, the ``Vol:`` line, else the file name); ``encoding``
    (``--encoding``) the encoding the file is read in."""
    source = read_issue(path, encoding=encoding)
    if issue_id is not None:
        if not issue_id.strip() or len(issue_id) > 100 or any(c.isspace() for c in issue_id):
            raise InputError(f"--issue-id {issue_id!r}: use one word of at most 100 characters")
        source.id = issue_id
    return compose(source, config, archive=archive)


def write_outputs(composed: ComposedIssue, out_dir: Path, preview: bytes) -> dict[str, Path]:
    """Write issue.html, issue.txt and preview.eml; each file appears whole or not at all."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InputError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    written = {}
    for name, data in (
        ("issue.html", composed.html.encode("utf-8")),
        ("issue.txt", composed.text.encode("utf-8")),
        ("preview.eml", preview),
    ):
        target = out_dir / name
        partial = out_dir / f".{name}.partial"
        try:
            partial.write_bytes(data)
            partial.replace(target)
        except OSError as exc:
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
        written[name] = target
    return written
