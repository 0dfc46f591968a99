"""Reading an issue's source text: Markdown with YAML front matter, the digest text as staff
draft it today, or any other Markdown document.

All three give an :class:`IssueSource` with the same fields, so they render the same way.
Inline text (headlines, detail paragraphs, the closing note) stays Markdown here; the
composer renders it.
"""

import codecs
import datetime as dt
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from digest_mailer.errors import InputError

FRONT_MATTER_KEYS = {
    "id",
    "title",
    "volume",
    "date",
    "subject",
    "preheader",
    "image",
    "image_alt",
    "image_credit",
    "image_credit_url",
}

VOL_RE = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*|__)?\s*vol(?:ume)?\.?\s*(?:no\.?)?\s*[:#]?\s*(?P<vol>[\w.\-/]+?)"
    r"\s*(?:\*\*|__)?\s*$",
    re.IGNORECASE,
)
SECTION_RE = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*|__)?\s*(?P<name>headlines?|details?)\s*:?\s*(?:\*\*|__)?\s*:?\s*$",
    re.IGNORECASE,
)
IMAGE_CREDIT_RE = re.compile(
    r"^\s*image\s+(?:source|credits?)\s*:\s*(?P<credit>.+?)\s*$", re.IGNORECASE
)
IMAGE_RE = re.compile(r"^\s*image\s*:\s*(?P<src>\S+)\s*$", re.IGNORECASE)
MD_LINK_RE = re.compile(r"^\[(?P<text>[^\]]*)\]\((?P<url>[^)\s]*)\)$")
BULLET_RE = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+(?P<text>.*)$")
RULE_RE = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$")
YEAR_RE = re.compile(r"\b(19|20)\d{2}\b")
QUOTES = "\"'“”‘’«»„"
DATE_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%Y-%m-%d", "%B %d %Y")


@dataclass
class IssueSource:
    """What an issue says, whatever form it was written in."""

    path: Path
    form: str  # "front-matter", "digest-text", "article" or "markdown"
    title: str = ""
    volume: str = ""
    date: str = ""
    subject: str = ""
    preheader: str = ""
    image: str = ""
    image_alt: str = ""
    image_credit: str = ""
    image_credit_url: str = ""
    headlines: list[str] = field(default_factory=list)  # inline Markdown
    details: list[str] = field(default_factory=list)  # inline Markdown
    footer_note: str = ""  # inline Markdown: the closing paragraph
    body: str = ""  # block Markdown, for documents without the digest sections
    id: str = ""  # front matter ``id`` or ``--issue-id``: the issue's id, whatever the volume
    encoding: str = "UTF-8"  # what the file was read as (not part of what is composed)
    # (line, level, code, message): what the draft's structure says, for the lint
    structure: list[tuple[int, str, str, str]] = field(default_factory=list)

    @property
    def issue_id(self) -> str:
        """The issue's id in the send log: ``id`` (front matter or ``--issue-id``), else
        the volume, else the file name."""
        return self.id or self.volume or self.path.stem

    @property
    def issue_id_source(self) -> str:
        """Where the id comes from, for messages."""
        if self.id:
            return "its id"
        return "its Vol: line" if self.volume else f"the file name {self.path.name!r}"

    @property
    def is_digest(self) -> bool:
        return bool(self.headlines or self.details)

    @property
    def parsed_date(self) -> dt.date | None:
        return parse_date(self.date)


def parse_date(text: str) -> dt.date | None:
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text.strip())
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
    return None


def format_date(value: dt.date) -> str:
    return f"{value:%B} {value.day}, {value.year}"


MAX_DRAFT_BYTES = 5_000_000  # a draft is a few dozen KB; Gmail clips HTML over 102 KB


def read_issue(path: Path, *, encoding: str | None = None) -> IssueSource:
    """Read an issue file in any of the three forms; bad input is an :class:`InputError`.
    The text's encoding is found as :func:`decode_draft` says, unless ``encoding`` is
    given."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
            raise InputError(f"{path} is not a regular file")
        with path.open("rb") as handle:
            raw = handle.read(MAX_DRAFT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_DRAFT_BYTES:
        raise InputError(
            f"{path} is over {MAX_DRAFT_BYTES // 1_000_000} MB: an issue's text is a few "
            "dozen KB (is it the right file?)"
        )
    if b"\0" in raw and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path} is not a text file (it holds NUL bytes)")
    text, used = decode_draft(raw, path, encoding)
    issue = parse_issue(text.replace("\r\n", "\n").replace("\r", "\n"), path)
    issue.encoding = used
    return issue


def decode_draft(raw: bytes, path: Path, encoding: str | None = None) -> tuple[str, str]:
    """The draft's text and the encoding it was read in. Drafts saved by Word or Outlook
    are read without options: a byte-order mark (UTF-8, UTF-16), else strict UTF-8, else
    Windows-1252 (smart quotes 0x91-0x94, dashes 0x96/0x97); ``encoding`` overrides."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(f"--encoding {encoding!r}: not an encoding Python knows") from None
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InputError(_undecodable(raw, exc, path, encoding)) from None
        return text.removeprefix("\ufeff"), encoding
    if raw.startswith(codecs.BOM_UTF8):
        encoding, raw = "UTF-8", raw[len(codecs.BOM_UTF8) :]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError as exc:
            raise InputError(_undecodable(raw, exc, path, "UTF-16")) from None
    try:
        return raw.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError as exc:
        raise InputError(
            _undecodable(raw, exc, path, "UTF-8 or Windows-1252") + "; name it with --encoding"
        ) from None


def _undecodable(raw: bytes, exc: UnicodeDecodeError, path: Path, encoding: str) -> str:
    line = raw[: exc.start].count(b"\n") + 1
    return f"{path} line {line}: not {encoding} text (byte 0x{raw[exc.start]:02x})"


def parse_issue(text: str, path: Path) -> IssueSource:
    if not text.strip():
        raise InputError(f"{path} is empty")
    lines = text.split("\n")
    if lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            return _front_matter(lines[1:end], lines[end + 1 :], path)
    if _looks_like_article(lines):
        issue = IssueSource(path, "article")
        _article(lines, issue)
        return issue
    lines = [line for line in lines if not SEPARATOR_RE.match(line)]
    if _looks_like_digest(lines):
        issue = IssueSource(path, "digest-text")
        _digest_text(lines, issue)
        if not issue.title:
            issue.structure.append(
                (1, "error", "no-title", "line 1: no title: the first line is the issue's title")
            )
        return issue
    issue = IssueSource(path, "markdown")
    _generic(lines, issue)
    if not issue.title:
        raise InputError(
            f"{path}: no title found. Expected one of: the digest text (a title line, Vol:, "
            "Headlines:, Details:), the single article (Separator / its title / Separator), "
            "Markdown whose first line is a # heading or a short title, or front matter "
            "with title:"
        )
    return issue


def _front_matter(meta_lines: list[str], body: list[str], path: Path) -> IssueSource:
    try:
        meta = yaml.safe_load("\n".join(meta_lines)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}{where}: the front matter is not valid YAML: {problem}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: the front matter must be key: value lines")
    unknown = sorted(set(map(str, meta)) - FRONT_MATTER_KEYS)
    if unknown:
        raise InputError(
            f"{path}: unknown front matter key {unknown[0]!r} "
            f"(known: {', '.join(sorted(FRONT_MATTER_KEYS))})"
        )
    issue = IssueSource(path, "front-matter")
    if _has_sections(body):
        _digest_text(body, issue, header=False, first_line=len(meta_lines) + 3)
    else:
        issue.body = "\n".join(body).strip("\n")
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, dt.date):
            value = format_date(value)
        elif not isinstance(value, str | int | float):
            raise InputError(f"{path}: front matter {key!r} must be text, got {value!r}")
        setattr(issue, key, " ".join(str(value).split()))
    if not issue.title and not issue.is_digest:
        issue.title, issue.body = _title_from_body(issue.body)
    return issue


def _has_sections(lines: list[str]) -> bool:
    names = {m.group("name").lower() for line in lines if (m := SECTION_RE.match(line))}
    return "headlines" in names or "details" in names


def _looks_like_digest(lines: list[str]) -> bool:
    head = [line for line in lines if line.strip()][:8]
    has_vol = any(VOL_RE.match(line) for line in head)
    names = {m.group("name").lower() for line in lines if (m := SECTION_RE.match(line))}
    return ("headlines" in names and ("details" in names or has_vol)) or (has_vol and bool(names))


def _strip_heading(line: str) -> str:
    text = line.strip().lstrip("#").strip()
    for marker in ("**", "__"):
        if text.startswith(marker) and text.endswith(marker) and len(text) > 4:
            text = text[2:-2].strip()
    return text


def _digest_text(
    lines: list[str], issue: IssueSource, *, header: bool = True, first_line: int = 1
) -> None:
    """Map the digest draft's shape, line by line, onto the issue's fields, noting what
    its structure gets wrong (:func:`_note_structure`)."""
    section = "header" if header else "preamble"
    items: list[list[str]] = []
    footer: list[str] = []
    after_blank = False
    starts: dict[str, int] = {}  # the line each section label stands on
    item_lines: dict[str, list[int]] = {"headlines": [], "details": []}
    number = first_line - 1

    def finish() -> None:
        texts = [" ".join(part.strip() for part in item).strip() for item in items]
        texts = [t for t in texts if t]
        if section == "headlines":
            issue.headlines.extend(texts)
        elif section == "details":
            issue.details.extend(texts)
        items.clear()

    def label(m: re.Match[str], line: str) -> str:
        name = m.group("name").lower()
        name = name if name.endswith("s") else name + "s"
        starts.setdefault(name, number)
        written = _strip_heading(line).strip()
        if written.lower() != f"{name}:":
            issue.structure.append(
                (number, "warning", "section-label",
                 f"line {number}: {written!r} read as the {name.title()}: section; "
                 f"write {name.title()}:")
            )  # fmt: skip
        return name

    for line in lines:
        number += 1
        stripped = line.strip()
        if not stripped:
            after_blank = True
            continue
        if section == "footer":
            footer.append(stripped)
            continue
        if section in ("header", "preamble"):
            if m := SECTION_RE.match(line):
                section = label(m, line)
            elif section == "header":
                _header_line(stripped, issue)
            after_blank = False
            continue
        # inside Headlines: or Details:
        if m := SECTION_RE.match(line):
            finish()
            section = label(m, line)
        elif RULE_RE.match(line):
            finish()
            section = "footer"
        elif m := BULLET_RE.match(line):
            items.append([m.group("text")])
            item_lines[section].append(number)
        elif section == "details" and stripped[0] in QUOTES and (after_blank or not items):
            finish()
            section = "footer"
            footer.append(stripped)
        elif items and not after_blank:
            items[-1].append(stripped)  # a wrapped line continues the item
        else:
            items.append([stripped])  # a paragraph without a bullet is an item too
            item_lines[section].append(number)
        after_blank = False
    if section in ("headlines", "details"):
        finish()
    note = " ".join(footer).strip()
    if len(note) >= 2 and note[0] in QUOTES and note[-1] in QUOTES:
        note = note[1:-1].strip()
    issue.footer_note = note
    _note_structure(issue, starts, item_lines)


LINK_ONLY_RE = re.compile(r"^\[[^\]]{1,500}\]\([^)\s]{0,2000}\)$")


def _note_structure(
    issue: IssueSource, starts: dict[str, int], item_lines: dict[str, list[int]]
) -> None:
    """Warnings and errors about the digest draft's structure, with line numbers."""
    note = issue.structure.append
    for name in ("headlines", "details"):
        if name in starts and not getattr(issue, name):
            note((starts[name], "error", "empty-section",
                  f"line {starts[name]}: the {name.title()}: section is empty"))  # fmt: skip
    if "headlines" not in starts:
        note((0, "warning", "no-headlines", "no Headlines: section"))
    if issue.headlines and issue.details and len(issue.headlines) != len(issue.details):
        note((starts.get("details", 0), "warning", "count-mismatch",
              f"{len(issue.headlines)} headlines but {len(issue.details)} details"))  # fmt: skip
    seen: dict[str, int] = {}
    for text, line in zip(issue.headlines, item_lines["headlines"], strict=False):
        key = " ".join(text.lower().split())
        if key in seen:
            note((line, "warning", "duplicate-headline",
                  f"line {line}: the same headline as line {seen[key]}"))  # fmt: skip
        seen.setdefault(key, line)
    for name in ("headlines", "details"):
        for text, line in zip(getattr(issue, name), item_lines[name], strict=False):
            if LINK_ONLY_RE.match(text.strip()):
                message = f"line {line}: this bullet is only a link; say what it is about"
                note((line, "warning", "link-only-bullet", message))


def _header_line(text: str, issue: IssueSource) -> None:
    if m := VOL_RE.match(text):
        issue.volume = m.group("vol")
    elif m := IMAGE_CREDIT_RE.match(text):
        credit = m.group("credit")
        if link := MD_LINK_RE.match(credit):
            issue.image_credit, issue.image_credit_url = link.group("text"), link.group("url")
        else:
            issue.image_credit = credit
    elif m := IMAGE_RE.match(text):
        issue.image = m.group("src")
    elif not issue.title:
        issue.title = _strip_heading(text)
    elif not issue.date and (parse_date(text) or YEAR_RE.search(text)):
        parsed = parse_date(text)
        issue.date = format_date(parsed) if parsed else text
    else:  # anything else before the sections reads as an introduction
        issue.body = f"{issue.body}\n\n{text}".strip()


def _title_from_body(body: str) -> tuple[str, str]:
    lines = body.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            return _strip_heading(line), "\n".join(lines[i + 1 :]).strip("\n")
    return "", body


def _generic(lines: list[str], issue: IssueSource) -> None:
    """Any other Markdown: its first line is the title when it is a heading or a short line
    that does not end a sentence; otherwise there is no title (an error, not an issue
    named after a stray sentence)."""
    title, body = _title_from_body("\n".join(lines))
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("#") or (len(title) <= MAX_TITLE and not title.endswith((".", ","))):
        issue.title, issue.body = title, body
    else:
        issue.body = "\n".join(lines).strip("\n")


MAX_TITLE = 150
SEPARATOR_RE = re.compile(r"^[ \t]*separator[ \t]*$", re.IGNORECASE)
CURRENT_ISSUE_RE = re.compile(r"^[ \t]*current[ \t]+issue[ \t]*[-–—:][ \t]*", re.IGNORECASE)


def _looks_like_article(lines: list[str]) -> bool:
    """The single-article shape copied from the website: a line ``Separator``, the
    title, another ``Separator``, then the article."""
    head = [line for line in lines if line.strip()][:6]
    marks = [i for i, line in enumerate(head) if SEPARATOR_RE.match(line)]
    return len(marks) >= 2 and marks[0] == 0 and marks[1] > 1


def _article(lines: list[str], issue: IssueSource) -> None:
    marks = [i for i, line in enumerate(lines) if SEPARATOR_RE.match(line)]
    first, second = marks[0], marks[1]
    issue.title = " ".join(_strip_heading(x) for x in lines[first + 1 : second] if x.strip())
    rest = [line for line in lines[second + 1 :] if not SEPARATOR_RE.match(line)]
    rule = max((i for i, line in enumerate(rest) if RULE_RE.match(line)), default=None)
    footer: list[str] = []
    if rule is not None:
        rest, footer = rest[:rule], rest[rule + 1 :]
    paragraphs: list[str] = []
    for block in "\n".join(rest).split("\n\n"):
        text = block.strip()
        if not text:
            continue
        if CURRENT_ISSUE_RE.match(text):  # a labelled note, its links kept
            text = "**Current issue:** " + CURRENT_ISSUE_RE.sub("", text, count=1).strip()
        paragraphs.append(text)
    issue.body = "\n\n".join(paragraphs)
    note = " ".join(x.strip() for x in footer if x.strip())
    if len(note) >= 2 and note[0] in QUOTES and note[-1] in QUOTES:
        note = note[1:-1].strip()
    issue.footer_note = note
