"""Turning a CSV file's bytes into text lines, in its encoding.

Without ``--encoding``: UTF-8, with or without a BOM (UTF-16 with its BOM). A line that is
not text in the file's encoding is kept aside with why (:class:`Lines`) so the reader can
leave that one row out and read the others; only a file that is not text at all (binary,
or a header that cannot be decoded) is refused as a whole. The comment in
:func:`decode_lines` says which encoding each line is read in.

Pure: no store.
"""

import codecs
import io
from dataclasses import dataclass
from pathlib import Path

from digest_mailer.errors import InputError


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _label(name: str) -> str:
    return "UTF-8" if name in ("utf-8", "utf-8-sig") else name


def _ascii_compatible(name: str) -> bool:
    try:
        return bytes(range(128)).decode(name) == "".join(map(chr, range(128)))
    except (UnicodeDecodeError, LookupError):
        return False


def _single_byte(name: str) -> bool:
    """cp1252, latin-1, mac-roman…: one byte, one character (not UTF-8, not shift_jis)."""
    return (
        name not in ("utf-8", "utf-8-sig") and len(bytes(range(256)).decode(name, "replace")) == 256
    )


@dataclass
class Lines:
    """The file as text lines, with the lines that were not text in its encoding."""

    lines: list[str]
    bad: dict[int, str]  # line index -> why ("not valid UTF-8 (byte 0xe9 at offset 123)")
    fallback: set[int]  # line indexes read in the --encoding given, not as UTF-8
    fallback_name: str
    hint: str  # what to do about a bad line


def decode_lines(path: Path, data: bytes, encoding: str | None) -> Lines:
    name = "utf-8"
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise InputError(
                f"unknown encoding {encoding!r}: use a name such as utf-8, cp1252 or latin-1"
            ) from None
    if encoding is None and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        name = "utf-16"
    if not _ascii_compatible(name):  # UTF-16 and the like: lines cannot be cut as bytes
        return _decode_whole(path, data, name)
    if b"\x00" in data:
        raise InputError(f"{path} looks like a binary file, not CSV text")
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    # Which encoding each line is read in. Without --encoding: UTF-8, a BOM or not.
    # With a single-byte --encoding (cp1252, latin-1…), a line that is valid UTF-8 is still
    # read as UTF-8 and only the others in the encoding given: a line of legacy text that
    # happens to be valid UTF-8 with accents would need sequences like "Ã©" (practically
    # never written), while a UTF-8 file with a few rows pasted from a cp1252 source is
    # common, and decoding all of it as cp1252 would turn every "Zoë" into "ZoÃ«" without
    # a word. A UTF-8 BOM says the file was saved as UTF-8: it is dropped (as UTF-8 reads
    # it; its three bytes are never a header in another encoding) and UTF-8 comes first
    # whatever --encoding says, which then only names the encoding of the rows that are
    # not UTF-8. Other --encoding values without a BOM (shift_jis…) are taken as given:
    # their text can be valid UTF-8 by chance.
    if name in ("utf-8", "utf-8-sig"):
        primary, fallback = "utf-8", None
        hint = "save the file as UTF-8 or pass --encoding cp1252"
    elif start or _single_byte(name):
        primary, fallback = "utf-8", name
        hint = "save the file as UTF-8 or pass the encoding it was saved in with --encoding"
    else:
        primary, fallback = name, None
        hint = "pass the encoding the file was saved in with --encoding"
    lines: list[str] = []
    bad: dict[int, str] = {}
    used_fallback: set[int] = set()
    offset = start
    for index, raw in enumerate(data[start:].splitlines(keepends=True)):
        try:
            lines.append(raw.decode(primary))
        except UnicodeDecodeError as exc:
            failed = exc
            text = None
            if fallback is not None:
                try:
                    text = raw.decode(fallback)
                    used_fallback.add(index)
                except UnicodeDecodeError as second:
                    failed = second
            if text is None:
                at = offset + failed.start
                what = (
                    f"neither UTF-8 nor {fallback}" if fallback else f"not valid {_label(primary)}"
                )
                bad[index] = f"{what} (byte 0x{data[at]:02x} at offset {at})"
                text = raw.decode(primary, "replace")  # for the row's shape only
            lines.append(text)
        offset += len(raw)
    return Lines(lines, bad, used_fallback, fallback or "", hint)


def _decode_whole(path: Path, data: bytes, name: str) -> Lines:
    try:
        text = data.decode(name)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(name, "replace").count("\n") + 1
        raise InputError(
            f"{path}: line {line} is not valid {name} (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); pass the encoding the file was saved in with --encoding; "
            "nothing was imported"
        ) from None
    if "\x00" in text:
        raise InputError(f"{path} looks like a binary file, not CSV text")
    lines = list(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    return Lines(lines, {}, set(), "", "")


def decode_file(path: Path, encoding: str | None = None) -> str:
    """The text of a CSV file (rows that are not text in its encoding as U+FFFD)."""
    return "".join(decode_lines(path, read_bytes(path), encoding).lines)
