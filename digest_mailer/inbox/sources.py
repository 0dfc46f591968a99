"""Reading the request mailbox and the bounce mailbox: an mbox file, a Maildir, or an
IMAP folder.

Each source yields ``(uid, raw bytes)`` and is told which messages were processed, and
which of them were acted on, once their decisions are committed
(:func:`~digest_mailer.inbox.run.run_mailbox`). mbox and Maildir are only read (processing
them again is a no-op, by message key).

On IMAP every processed message gets the keyword ``$DigestProcessed``
(``$DigestBounceProcessed`` in the bounce folder), so it is never read twice, even when a
person already read it in their mail client. The request address may be somebody's
everyday inbox, so only messages that were acted on (subscribe, unsubscribe, confirm,
bounce) are also marked ``\\Seen`` and moved to the processed folder; ignored and held
messages stay unread where they were, unless ``[inbox] imap_move_all`` is set.

Pure: reading mailboxes imports nothing from the store.
"""

import imaplib
import mailbox
import re
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path

from digest_mailer.config import Config
from digest_mailer.errors import ConfigError, InputError, MailboxError

KEYWORD = "$DigestProcessed"
BOUNCE_KEYWORD = "$DigestBounceProcessed"


class MessageSource:
    """Where messages come from: yields ``(uid, raw bytes)``; told what was processed."""

    name: str

    def messages(self) -> Iterator[tuple[str, bytes]]:  # pragma: no cover - a protocol
        raise NotImplementedError

    def mark_processed(self, processed: Sequence[tuple[str, bool]]) -> None:
        """``processed``: ``(uid, acted on)`` for each message whose decision committed."""
        raise NotImplementedError  # pragma: no cover

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError


class MboxSource(MessageSource):
    def __init__(self, path: Path) -> None:
        if path.is_dir():
            raise InputError(f"{path} is a folder, not an mbox file (for a Maildir use --maildir)")
        if not path.is_file():
            raise InputError(f"mbox file {path} not found")
        self.name = f"mbox {path}"
        self._box = mailbox.mbox(str(path), create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        try:
            keys = list(self._box.iterkeys())
        except (OSError, mailbox.Error) as exc:
            raise InputError(f"{self.name} cannot be read: {exc}") from None
        for key in keys:
            yield str(key), self._box.get_bytes(key)

    def mark_processed(self, processed: Sequence[tuple[str, bool]]) -> None:
        pass

    def close(self) -> None:
        self._box.close()


class MaildirSource(MessageSource):
    def __init__(self, path: Path) -> None:
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise InputError(f"{path} is not a Maildir (it needs cur/ and new/ folders)")
        self.name = f"Maildir {path}"
        self._box = mailbox.Maildir(str(path), factory=None, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in sorted(self._box.iterkeys(), key=_arrival):
            try:
                yield key, self._box.get_bytes(key)
            except KeyError:  # removed by another program meanwhile
                continue

    def mark_processed(self, processed: Sequence[tuple[str, bool]]) -> None:
        pass

    def close(self) -> None:
        self._box.close()


def _arrival(key: str) -> tuple[int, int, str]:
    """Maildir names start ``SECONDS.M<microseconds>…`` with the microseconds not
    zero-padded, so a plain sort can put a later message first."""
    match = re.match(r"(\d+)(?:\.M(\d+))?", key)
    if match is None:
        return (1 << 62, 0, key)
    return (int(match.group(1)), int(match.group(2) or 0), key)


def _imap_error(exc: BaseException | list[object]) -> str:
    """The text of an IMAP error: an exception, or the data of a NO/BAD reply."""
    if isinstance(exc, BaseException):
        text = exc.args[0] if exc.args else exc
    else:
        text = exc[0] if exc else "no reason given"
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)


class IMAPSource(MessageSource):
    """One IMAP folder over TLS (certificates verified; ``imap_ca_file`` adds a private
    CA), password from the environment variable named by ``imap_password_env``."""

    def __init__(
        self,
        config: Config,
        *,
        read_only: bool = False,
        folder: str | None = None,
        processed_folder: str | None = None,
        keyword: str = KEYWORD,
        move_all: bool | None = None,
    ) -> None:
        box = config.inbox
        host = config.require("inbox", "imap_host")
        user = config.require("inbox", "imap_user")
        password = config.secret("inbox", "imap_password_env")
        folder = box.imap_folder if folder is None else folder
        self.name = f"IMAP {user}@{host}:{box.imap_port}/{folder}"
        self.read_only = read_only
        self.keyword = keyword
        self.move_all = box.imap_move_all if move_all is None else move_all
        self.processed_folder = (
            box.imap_processed_folder if processed_folder is None else processed_folder
        )
        context = ssl.create_default_context()
        if box.imap_ca_file:
            ca = config.path(box.imap_ca_file)
            if not ca.is_file():
                raise ConfigError(f"{config.source}: [inbox] imap_ca_file: no file {ca}")
            context.load_verify_locations(cafile=str(ca))
        try:
            if box.imap_security == "ssl":
                conn = imaplib.IMAP4_SSL(host, box.imap_port, ssl_context=context, timeout=30)
            else:
                conn = imaplib.IMAP4(host, box.imap_port, timeout=30)
                if box.imap_security == "starttls":
                    conn.starttls(ssl_context=context)
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(
                f"the TLS certificate of {host}:{box.imap_port} could not be verified: "
                f"{exc.verify_message} (set [inbox] imap_ca_file for a private CA)"
            ) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"cannot connect to {self.name}: {exc}") from None
        self._conn = conn
        try:
            conn.login(user, password)
            # selected read-write even for a dry run (which never stores a flag and reads
            # with BODY.PEEK): only then does the server say whether it keeps keywords
            kind, data = conn.select(_quote(folder))
            if kind != "OK":
                raise MailboxError(f"{self.name}: cannot open the folder: {_imap_error(data)}")
            flags = conn.untagged_responses.get("PERMANENTFLAGS", [b""])[0] or b""
            self._keywords = b"\\*" in flags
            if self.processed_folder and not read_only:
                conn.create(_quote(self.processed_folder))  # an error means it exists
        except imaplib.IMAP4.error as exc:
            self.close()
            raise MailboxError(f"{self.name}: {_imap_error(exc)}") from None

    def messages(self) -> Iterator[tuple[str, bytes]]:
        query = ("UNKEYWORD", self.keyword) if self._keywords else ("UNSEEN",)
        kind, data = self._conn.uid("SEARCH", None, *query)
        if kind != "OK":
            raise MailboxError(f"{self.name}: search failed: {_imap_error(data)}")
        for uid in (data[0] or b"").split():
            kind, parts = self._conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
            if kind == "OK" and raw is not None:
                yield uid.decode(), raw

    def mark_processed(self, processed: Sequence[tuple[str, bool]]) -> None:
        if not processed or self.read_only:
            return
        moved = [uid for uid, acted in processed if acted or self.move_all]
        kept = [uid for uid, acted in processed if not (acted or self.move_all)]
        if self._keywords and kept:  # never read twice, left unread and in place
            self._conn.uid("STORE", ",".join(kept), "+FLAGS.SILENT", f"({self.keyword})")
        if not moved:
            return
        ids = ",".join(moved)
        flags = f"(\\Seen {self.keyword})" if self._keywords else "(\\Seen)"
        self._conn.uid("STORE", ids, "+FLAGS.SILENT", flags)
        if self.processed_folder:
            folder = _quote(self.processed_folder)
            if "MOVE" in self._conn.capabilities:
                self._conn.uid("MOVE", ids, folder)
            else:
                self._conn.uid("COPY", ids, folder)
                self._conn.uid("STORE", ids, "+FLAGS.SILENT", "(\\Deleted)")
                self._conn.expunge()

    def close(self) -> None:
        try:
            if self._conn.state == "SELECTED":
                self._conn.close()
            self._conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _quote(folder: str) -> str:
    return folder if re.fullmatch(r"[A-Za-z0-9._/-]+", folder) else '"' + folder.replace(
        "\\", "\\\\").replace('"', '\\"') + '"'  # fmt: skip


def open_source(
    config: Config,
    *,
    mbox: Path | None = None,
    maildir: Path | None = None,
    imap: bool = False,
    read_only: bool = False,
    bounces: bool = False,
) -> MessageSource:
    """The mailbox named on the command line, else the one the config sets: ``[inbox]``
    for requests; with ``bounces``, ``[bounces]`` (an IMAP folder there is read on the
    ``[inbox]`` server, with its own processed keyword)."""
    chosen = sum(bool(x) for x in (mbox, maildir, imap))
    if chosen > 1:
        raise InputError("give one of --mbox, --maildir or --imap")
    if mbox:
        return MboxSource(mbox)
    if maildir:
        return MaildirSource(maildir)
    section, what = ("bounces", "bounce") if bounces else ("inbox", "request")
    box = getattr(config, section)
    imap_key = "imap_folder" if bounces else "imap_host"
    if imap or (not chosen and getattr(box, imap_key)):
        if not bounces:
            return IMAPSource(config, read_only=read_only)
        return IMAPSource(
            config,
            read_only=read_only,
            folder=config.require("bounces", "imap_folder"),
            processed_folder=box.imap_processed_folder,
            keyword=BOUNCE_KEYWORD,
            move_all=True,  # a folder of its own: every processed report is marked
        )
    if box.mbox:
        return MboxSource(config.path(box.mbox))
    if box.maildir:
        return MaildirSource(config.path(box.maildir))
    raise ConfigError(
        f"{config.source}: no {what} mailbox: give --mbox FILE, --maildir DIR or --imap, "
        f"or set [{section}] mbox, maildir or {imap_key}"
    )
