"""The subscriber store: add, remove, erase, list, import and export subscribers.

Every change of status, name or list membership writes an :class:`Event`; nothing is
silently overwritten. Functions take the session first and never commit: the caller owns
the transaction, so an import that fails part-way leaves the store as it was.
"""

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

from email_validator import EmailNotValidError
from sqlalchemy import String, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session, selectinload

from digest_mailer.addresses import _validate, address_key, normalize_address
from digest_mailer.db import insert_many
from digest_mailer.errors import InputError, NotFoundError
from digest_mailer.models import (
    Bounce,
    Delivery,
    Event,
    InboxMessage,
    MailingList,
    Reply,
    Subscriber,
    UTCDateTime,
    list_members,
    utcnow,
)

INACTIVE_STATUSES = ("unsubscribed", "bounced", "complained")
CHUNK = 2000


# --------------------------------------------------------------------------- lists


def get_list(session: Session, name: str) -> MailingList:
    found = session.scalars(select(MailingList).where(MailingList.name == name)).first()
    if found is None:
        known = session.scalars(select(MailingList.name).order_by(MailingList.name)).all()
        hint = f" (lists: {', '.join(known)})" if known else " (there are no lists yet)"
        raise NotFoundError(
            f"no list named {name!r}{hint}; create it with `digest-mailer lists create {name}`"
        )
    return found


def create_list(session: Session, name: str, description: str = "") -> MailingList:
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        raise InputError(f"{name!r} is not a usable list name: use one word such as 'seed'")
    if session.scalars(select(MailingList).where(MailingList.name == name)).first():
        raise InputError(f"a list named {name!r} already exists")
    mailing_list = MailingList(name=name, description=description)
    session.add(mailing_list)
    session.flush()
    return mailing_list


def ensure_list(session: Session, name: str, description: str = "") -> MailingList:
    found = session.scalars(select(MailingList).where(MailingList.name == name)).first()
    return found or create_list(session, name, description)


def list_counts(session: Session) -> list[tuple[MailingList, int, int]]:
    """Each list with its member count and its active member count."""
    active = func.count(Subscriber.id).filter(Subscriber.status == "active")
    rows = session.execute(
        select(MailingList, func.count(Subscriber.id), active)
        .outerjoin(list_members, list_members.c.list_id == MailingList.id)
        .outerjoin(Subscriber, Subscriber.id == list_members.c.subscriber_id)
        .group_by(MailingList.id)
        .order_by(MailingList.name)
    ).all()
    return [(m, total, act) for m, total, act in rows]


def delete_list(session: Session, name: str) -> int:
    """Delete a list (its members stay subscribers); returns how many members it had."""
    mailing_list = get_list(session, name)
    members = len(mailing_list.members)
    session.delete(mailing_list)
    session.flush()
    return members


# --------------------------------------------------------------------------- subscribers


def find_subscriber(session: Session, address: str) -> Subscriber | None:
    return session.scalars(
        select(Subscriber).where(Subscriber.email_key == address_key(address.strip()))
    ).first()


def get_subscriber(session: Session, address: str) -> Subscriber:
    found = find_subscriber(session, address)
    if found is None:
        raise NotFoundError(f"no subscriber with the address {address.strip()!r}")
    return found


def record_event(
    session: Session,
    subscriber: Subscriber | None,
    kind: str,
    actor: str,
    detail: str = "",
    old_status: str | None = None,
    new_status: str | None = None,
) -> Event:
    event = Event(
        subscriber_id=subscriber.id if subscriber is not None else None,
        kind=kind,
        actor=actor,
        detail=detail,
        old_status=old_status,
        new_status=new_status,
        created_at=utcnow(),
    )
    session.add(event)
    return event


def set_status(
    session: Session,
    subscriber: Subscriber,
    status: str,
    *,
    actor: str,
    detail: str = "",
    reason: str | None = None,
) -> bool:
    """Change a subscriber's status and record it; returns False when nothing changed."""
    old = subscriber.status
    if old == status:
        return False
    now = utcnow()
    subscriber.status = status
    subscriber.updated_at = now
    if status in INACTIVE_STATUSES:
        subscriber.unsubscribed_at = now
        subscriber.unsubscribe_reason = reason or detail or None
    elif status == "active":
        subscriber.unsubscribed_at = None
        subscriber.unsubscribe_reason = None
        subscriber.bounce_score = 0.0  # bounces before a reactivation no longer count
    session.flush()
    record_event(session, subscriber, "status", actor, detail or reason or "", old, status)
    return True


def remove_subscriber(
    session: Session, address: str, *, reason: str = "", actor: str = "cli"
) -> tuple[Subscriber, bool]:
    """Mark a subscriber unsubscribed (history kept); returns (subscriber, changed)."""
    subscriber = get_subscriber(session, address)
    if subscriber.status == "unsubscribed":
        return subscriber, False
    changed = set_status(
        session,
        subscriber,
        "unsubscribed",
        actor=actor,
        detail=reason or "removed by staff",
        reason=reason or "removed by staff",
    )
    return subscriber, changed


def purge_subscriber(session: Session, address: str, *, actor: str = "cli") -> int:
    """Erase a person and their history; leaves one event without personal data."""
    subscriber = get_subscriber(session, address)
    subscriber_id = subscriber.id
    # the send log keeps its rows, without the address
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id)
        .values(address=f"erased-subscriber-{subscriber_id}", subscriber_id=None)
    )
    # requests and replies from or about the address lose it and what the person wrote
    key = subscriber.email_key
    erased = f"erased-subscriber-{subscriber_id}"
    for column in (InboxMessage.from_address, InboxMessage.address):
        session.execute(
            update(InboxMessage)
            .where(func.lower(column) == key)
            .values(from_address=erased, address=None, subject="", excerpt="", raw=None)
        )
    session.execute(delete(Reply).where(Reply.address_key == key))
    # bounce records name the address (those linked to the subscriber go with it too)
    session.execute(delete(Bounce).where(Bounce.address == key))
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber_id))
    session.expunge(subscriber)
    record_event(session, None, "purged", actor, f"subscriber #{subscriber_id} erased on request")
    session.flush()
    return subscriber_id


def list_subscribers(
    session: Session, *, status: str | None = None, list_name: str | None = None
) -> Sequence[Subscriber]:
    query = (
        select(Subscriber).options(selectinload(Subscriber.lists)).order_by(Subscriber.email_key)
    )
    if status:
        query = query.where(Subscriber.status == status)
    if list_name:
        mailing_list = get_list(session, list_name)
        query = query.join(list_members, list_members.c.subscriber_id == Subscriber.id).where(
            list_members.c.list_id == mailing_list.id
        )
    return session.scalars(query).all()


def subscriber_dict(subscriber: Subscriber) -> dict[str, object]:
    def iso(value: object) -> str | None:
        return value.isoformat() if value is not None else None  # type: ignore[attr-defined]

    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status,
        "source": subscriber.source,
        "lists": [m.name for m in subscriber.lists],
        "created_at": iso(subscriber.created_at),
        "updated_at": iso(subscriber.updated_at),
        "unsubscribed_at": iso(subscriber.unsubscribed_at),
        "unsubscribe_reason": subscriber.unsubscribe_reason,
    }


# --------------------------------------------------------------------------- add and import


@dataclass
class Entry:
    """One address to add, as read from the command line or a file row."""

    email: str
    name: str = ""
    row: int = 0


@dataclass
class Invalid:
    row: int
    value: str
    reason: str


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    duplicates: int = 0
    invalid: list[Invalid] = field(default_factory=list)
    skipped_addresses: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "invalid": len(self.invalid),
        }


def add_subscribers(
    session: Session,
    addresses: Iterable[str],
    *,
    name: str = "",
    list_name: str | None = None,
    resubscribe: bool = False,
    allow_test_domains: bool = False,
    actor: str = "cli",
) -> ImportReport:
    """Staff add addresses: active at once. Any invalid address refuses the whole call."""
    addresses = list(addresses)
    if name and len(addresses) > 1:
        raise InputError("--name names one person: give it with a single address")
    entries = [
        Entry(normalize_address(address, allow_test_domains=allow_test_domains), name)
        for address in addresses
    ]
    report = ImportReport()
    merged = _merge_entries(entries, report)
    mailing_list = get_list(session, list_name) if list_name else None
    _upsert(
        session,
        merged,
        mailing_list,
        report,
        resubscribe=resubscribe,
        source="cli",
        actor=actor,
        origin="added by staff",
    )
    return report


def _merge_entries(entries: Iterable[Entry], report: ImportReport) -> list[Entry]:
    """One entry per mailbox; a later row's name fills an empty one."""
    merged: dict[str, Entry] = {}
    for entry in entries:
        key = address_key(entry.email)
        first = merged.get(key)
        if first is None:
            merged[key] = entry
        else:
            report.duplicates += 1
            if not first.name and entry.name:
                first.name = entry.name
    return list(merged.values())


def _chunks(items: Sequence[Entry], size: int) -> Iterator[Sequence[Entry]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_new(
    session: Session,
    fresh: Sequence[Entry],
    mailing_list: MailingList | None,
    *,
    source: str,
    actor: str,
    origin: str,
    list_detail: str,
    now: object,
) -> None:
    """Insert new subscribers with their events and memberships.

    One executemany for the rows, then INSERT ... SELECT for the events and memberships:
    set-based statements keep the per-row cost close to the insert itself.
    """
    keys = [address_key(e.email) for e in fresh]
    insert_many(
        session,
        Subscriber.__table__,
        [
            {
                "email": e.email,
                "email_key": key,
                "name": e.name,
                "status": "active",
                "source": source,
                "created_at": now,
                "updated_at": now,
            }
            for e, key in zip(fresh, keys, strict=True)
        ],
    )
    new_ids = Subscriber.email_key.in_(keys)
    at = literal(now, UTCDateTime())
    event_columns = ["subscriber_id", "kind", "actor", "detail", "new_status", "created_at"]
    session.execute(
        insert(Event.__table__).from_select(
            event_columns,
            select(
                Subscriber.id,
                literal("created"),
                literal(actor),
                literal(origin),
                literal("active"),
                at,
            ).where(new_ids),
        )
    )
    if mailing_list is not None:
        session.execute(
            insert(list_members).from_select(
                ["list_id", "subscriber_id"],
                select(literal(mailing_list.id), Subscriber.id).where(new_ids),
            )
        )
        session.execute(
            insert(Event.__table__).from_select(
                event_columns,
                select(
                    Subscriber.id,
                    literal("list"),
                    literal(actor),
                    literal(list_detail),
                    literal(None, String()),
                    at,
                ).where(new_ids),
            )
        )


def _upsert(
    session: Session,
    entries: Sequence[Entry],
    mailing_list: MailingList | None,
    report: ImportReport,
    *,
    resubscribe: bool,
    source: str,
    actor: str,
    origin: str,
) -> None:
    """Insert new subscribers and bring existing ones up to date, in set-based chunks."""
    list_detail = f"added to list {mailing_list.name!r}" if mailing_list else ""
    for chunk in _chunks(entries, CHUNK):
        now = utcnow()
        by_key = {address_key(e.email): e for e in chunk}
        existing = {
            row.email_key: row
            for row in session.execute(
                select(
                    Subscriber.id, Subscriber.email_key, Subscriber.status, Subscriber.name
                ).where(Subscriber.email_key.in_(by_key))
            )
        }
        members: set[int] = set()
        if mailing_list is not None and existing:
            members = set(
                session.scalars(
                    select(list_members.c.subscriber_id).where(
                        list_members.c.list_id == mailing_list.id,
                        list_members.c.subscriber_id.in_([r.id for r in existing.values()]),
                    )
                )
            )
        events: list[dict[str, object]] = []
        new_members: list[int] = []
        updates: list[dict[str, object]] = []

        def event(
            sid: int,
            kind: str,
            detail: str,
            old: str | None = None,
            new: str | None = None,
            events: list[dict[str, object]] = events,
            now: object = now,
        ) -> None:
            events.append(
                {
                    "subscriber_id": sid,
                    "kind": kind,
                    "actor": actor,
                    "detail": detail,
                    "old_status": old,
                    "new_status": new,
                    "created_at": now,
                }
            )

        fresh = [e for k, e in by_key.items() if k not in existing]
        if fresh:
            _insert_new(
                session,
                fresh,
                mailing_list,
                source=source,
                actor=actor,
                origin=origin,
                list_detail=list_detail,
                now=now,
            )
            report.added += len(fresh)

        for key, row in existing.items():
            entry = by_key[key]
            if row.status in INACTIVE_STATUSES and not resubscribe:
                report.skipped += 1
                report.skipped_addresses.append(f"{entry.email} ({row.status})")
                continue
            change: dict[str, object] = {}
            if row.status != "active":
                change["status"] = "active"
                change["unsubscribed_at"] = None
                change["unsubscribe_reason"] = None
                change["bounce_score"] = 0.0  # a fresh start, as set_status gives
                inactive = row.status in INACTIVE_STATUSES
                why = "resubscribed by staff" if inactive else "added by staff"
                event(row.id, "status", f"{why} ({source})", row.status, "active")
            if entry.name and entry.name != row.name:
                change["name"] = entry.name
                event(row.id, "name", f"name {row.name!r} -> {entry.name!r} ({source})")
            if mailing_list is not None and row.id not in members:
                new_members.append(row.id)
                event(row.id, "list", list_detail)
                change.setdefault("updated_at", now)
            if change:
                change["id"] = row.id
                change["updated_at"] = now
                updates.append(change)
                report.updated += 1
            else:
                report.unchanged += 1

        for change in updates:
            values = {k: v for k, v in change.items() if k != "id"}
            session.execute(update(Subscriber).where(Subscriber.id == change["id"]).values(values))
        if new_members:
            session.execute(
                insert(list_members),
                [{"list_id": mailing_list.id, "subscriber_id": sid} for sid in new_members],  # type: ignore[union-attr]
            )
        if events:
            session.execute(insert(Event.__table__), events)
    session.expire_all()


# --------------------------------------------------------------------------- CSV


EMAIL_HEADERS = {"email", "emailaddress", "mail", "emails", "mailaddress", "address", "courriel"}
NAME_HEADERS = {"name", "fullname", "displayname", "contactname", "subscribername"}
FIRST_HEADERS = {"firstname", "givenname", "first", "forename"}
LAST_HEADERS = {"lastname", "surname", "familyname", "last"}
DELIMITERS = (",", ";", "\t", "|")


def _header_key(cell: str) -> str:
    return "".join(ch for ch in cell.casefold() if ch.isalnum())


def decode_file(path: Path, encoding: str | None = None) -> str:
    """The text of a CSV file: UTF-8 with or without BOM, UTF-16 with BOM, or ``encoding``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if encoding is None:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            encoding = "utf-16"
        else:
            encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path} is not valid {exc.encoding} text (line {line}, byte 0x{data[exc.start]:02x});"
            " if it was saved by a Windows spreadsheet, try --encoding cp1252"
        ) from None
    if "\x00" in text:
        raise InputError(f"{path} looks like a binary file, not CSV text")
    return text


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the same, largest number of fields."""
    lines = [line for line in text.splitlines()[:50] if line.strip()][:20]
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        try:
            counts = {len(r) for r in csv.reader(lines, delimiter=delimiter) if any(r)}
        except csv.Error:
            continue
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = delimiter, fields
    return best


@dataclass
class _Columns:
    email: int
    name: int | None = None
    first: int | None = None
    last: int | None = None
    header: bool = True

    def name_of(self, cells: list[str]) -> str:
        def cell(i: int | None) -> str:
            return cells[i].strip() if i is not None and i < len(cells) else ""

        if self.name is not None and cell(self.name):
            return cell(self.name)
        return " ".join(p for p in (cell(self.first), cell(self.last)) if p)


def _find_columns(first_row: list[str], path: Path) -> _Columns:
    keys = [_header_key(c) for c in first_row]

    def find(names: set[str]) -> int | None:
        return next((i for i, k in enumerate(keys) if k in names), None)

    email = find(EMAIL_HEADERS)
    if email is None:
        email = next((i for i, k in enumerate(keys) if k.startswith("email")), None)
    if email is not None:
        return _Columns(email, find(NAME_HEADERS), find(FIRST_HEADERS), find(LAST_HEADERS))
    with_at = [i for i, cell in enumerate(first_row) if "@" in cell]
    if with_at:  # no header row: the column holding addresses, the next non-empty is the name
        others = [i for i, cell in enumerate(first_row) if i != with_at[0] and cell.strip()]
        return _Columns(with_at[0], others[0] if others else None, header=False)
    shown = ", ".join(repr(c) for c in first_row) or "nothing"
    raise InputError(
        f"{path} has no email column: expected a header such as 'email', 'e-mail' or "
        f"'Email Address' (first row has {shown}); nothing was imported"
    )


def read_csv(
    path: Path, *, allow_test_domains: bool = False, encoding: str | None = None
) -> tuple[list[Entry], list[Invalid]]:
    """Parse a spreadsheet export: (valid entries, invalid rows with reasons)."""
    text = decode_file(path, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    entries: list[Entry] = []
    invalid: list[Invalid] = []
    columns: _Columns | None = None
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if columns is None:
                columns = _find_columns(cells, path)
                if columns.header:
                    continue
            row = reader.line_num
            raw = cells[columns.email].strip() if columns.email < len(cells) else ""
            name = columns.name_of(cells)
            if "<" in raw:  # "Ana Lima <ana@corp.test>" pasted into the email cell
                display, raw = parseaddr(raw)
                name = name or display
            if not raw:
                invalid.append(Invalid(row, "", "no email address in this row"))
                continue
            try:
                email = _validate(raw, allow_test_domains)
            except EmailNotValidError as exc:
                invalid.append(Invalid(row, raw, str(exc)))
                continue
            entries.append(Entry(email, name[:200], row))
    except csv.Error as exc:
        raise InputError(f"{path} line {reader.line_num}: not readable as CSV: {exc}") from None
    if columns is None:
        raise InputError(f"{path} is empty: no rows to import")
    return entries, invalid


def import_csv(
    session: Session,
    path: Path,
    *,
    list_name: str | None = None,
    resubscribe: bool = False,
    allow_test_domains: bool = False,
    encoding: str | None = None,
    actor: str = "import",
) -> ImportReport:
    """Import a CSV file in one transaction (the caller's); see :func:`read_csv`."""
    mailing_list = get_list(session, list_name) if list_name else None
    entries, invalid = read_csv(path, allow_test_domains=allow_test_domains, encoding=encoding)
    report = ImportReport(invalid=invalid)
    merged = _merge_entries(entries, report)
    _upsert(
        session,
        merged,
        mailing_list,
        report,
        resubscribe=resubscribe,
        source="import",
        actor=actor,
        origin=f"imported from {path.name}",
    )
    return report


EXPORT_FIELDS = ("email", "name", "status", "lists", "source", "created_at", "unsubscribed_at")


def export_csv(
    session: Session,
    out: io.TextIOBase,
    *,
    status: str | None = None,
    list_name: str | None = None,
) -> int:
    """Write subscribers as CSV (header row, UTF-8) to ``out``; returns the row count."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_FIELDS)
    count = 0
    for subscriber in list_subscribers(session, status=status, list_name=list_name):
        data = subscriber_dict(subscriber)
        data["lists"] = ";".join(data["lists"])  # type: ignore[arg-type]
        writer.writerow(["" if data[f] is None else data[f] for f in EXPORT_FIELDS])
        count += 1
    return count
