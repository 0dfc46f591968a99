"""The subscriber store: add, remove, erase, list, import and export subscribers.

Every change of status, name, attributes or list membership writes an :class:`Event`;
nothing is silently overwritten. Functions take the session first and never commit: the
caller owns the transaction, so an import that fails part-way leaves the store as it was.
Reading and writing CSV files is :mod:`digest_mailer.csvio`, importing and exporting them
:mod:`digest_mailer.csv_transfer` (its functions are reachable here too).
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session, selectinload

from digest_mailer.addresses import address_key, display_name, normalize_address
from digest_mailer.csvio import (
    EXPORT_FIELDS,
    Entry,
    Invalid,
    Note,
    decode_file,
    dump_attributes,
    load_attributes,
    merge_attributes,
    read_csv,
    sniff_delimiter,
)
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
    new_link_salt,
    utcnow,
)
from digest_mailer.typos import address_typo

__all__ = [  # what callers used from here before the CSV part moved to csvio
    "EXPORT_FIELDS", "Entry", "Invalid", "Note", "address_key", "decode_file",
    "normalize_address", "read_csv", "sniff_delimiter",
]  # fmt: skip

# The CSV import and export live with the CSV code (digest_mailer.csv_transfer) and use
# this module, so it cannot import them up front: they are looked up on first use.
_CSV_TRANSFER = ("export_csv", "export_csv_file", "import_csv")


def __getattr__(name: str) -> Any:
    if name in _CSV_TRANSFER:
        from digest_mailer import csv_transfer

        return getattr(csv_transfer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


INACTIVE_STATUSES = ("unsubscribed", "bounced", "complained")
CHUNK = 2000


# --------------------------------------------------------------------------- lists


def get_list(session: Session, name: str, *, suggest_create: bool = True) -> MailingList:
    """The list named ``name``, or :class:`NotFoundError` naming the lists there are (and,
    with ``suggest_create``, how to create it: not when the list is to be deleted)."""
    found = session.scalars(select(MailingList).where(MailingList.name == name)).first()
    if found is None:
        known = session.scalars(select(MailingList.name).order_by(MailingList.name)).all()
        hint = f" (lists: {', '.join(known)})" if known else " (there are no lists yet)"
        create = f"; create it with `digest-mailer lists create {name}`" if suggest_create else ""
        raise NotFoundError(f"no list named {name!r}{hint}{create}")
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
    mailing_list = get_list(session, name, suggest_create=False)
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
    issue_id: str | None = None,
) -> Event:
    event = Event(
        subscriber_id=subscriber.id if subscriber is not None else None,
        kind=kind,
        actor=actor,
        detail=detail,
        old_status=old_status,
        new_status=new_status,
        created_at=utcnow(),
        issue_id=issue_id,
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
    issue_id: str | None = None,
) -> bool:
    """Change a subscriber's status and record it; returns False when nothing changed.
    ``issue_id``: the issue the change is attributed to (an unsubscribe through the
    signed link of one of its messages)."""
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
    record_event(
        session, subscriber, "status", actor, detail or reason or "", old, status, issue_id
    )
    return True


def remove_subscriber(
    session: Session, address: str, *, reason: str = "", actor: str = "cli"
) -> tuple[Subscriber, bool]:
    """Mark a subscriber unsubscribed (history kept); returns (subscriber, changed).

    Staff removing somebody already unsubscribed (on the web, say) is recorded too, as an
    event (kind ``removed``) naming the status: it ends the reader's 30-minute
    "Resubscribe" undo, which only works while the web unsubscribe is the latest status
    event. The row is locked (PostgreSQL) so an undo cannot slip in between."""
    found = get_subscriber(session, address)
    subscriber = session.get(Subscriber, found.id, with_for_update=True, populate_existing=True)
    assert subscriber is not None
    if subscriber.status == "unsubscribed":
        detail = f"removal confirmed by staff: {reason or 'removed by staff'}"
        record_event(session, subscriber, "removed", actor, detail, "unsubscribed", "unsubscribed")
        if reason:
            subscriber.unsubscribe_reason = reason
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
        mailing_list = get_list(session, list_name, suggest_create=False)
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
        "attributes": load_attributes(subscriber.attributes),
    }


# --------------------------------------------------------------------------- add and import


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    duplicates: int = 0
    invalid: list[Invalid] = field(default_factory=list)
    skipped_addresses: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # warnings about rows taken anyway
    rows: int | None = None  # data rows read from a file (None: no file)
    size: int | None = None  # bytes read from a file

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
    """Staff add addresses: active at once. Any invalid address refuses the whole call;
    an address whose domain looks like a typo (``gmail.con``) is added with a note."""
    addresses = list(addresses)
    if name and len(addresses) > 1:
        raise InputError("--name names one person: give it with a single address")
    entries = [
        Entry(normalize_address(address, allow_test_domains=allow_test_domains), display_name(name))
        for address in addresses
    ]
    report = ImportReport()
    for entry in entries:
        if typo := address_typo(entry.email):
            report.notes.append(Note(0, f"{typo.describe()}; added as written"))
    merged = merge_entries(entries, report)
    mailing_list = get_list(session, list_name) if list_name else None
    upsert(
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


def merge_entries(entries: Iterable[Entry], report: ImportReport) -> list[Entry]:
    """One entry per mailbox; a later row's name and attributes fill those missing."""
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
            for attribute, value in entry.attributes.items():
                first.attributes.setdefault(attribute, value)
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
    rows: list[dict[str, object]] = [
        {
            "email": e.email,
            "email_key": key,
            "name": e.name,
            "status": "active",
            "source": source,
            "attributes": dump_attributes(e.attributes),
            "link_salt": new_link_salt(),
            "created_at": now,
            "updated_at": now,
        }
        for e, key in zip(fresh, keys, strict=True)
    ]
    insert_many(session, Subscriber.__table__, rows)
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


def _merged_attributes(
    stored: str, entry: Entry, report: ImportReport
) -> tuple[dict[str, str], str] | None:
    """The stored attributes updated with the entry's (new values win) and the event's
    words, or None when nothing changes."""
    old = load_attributes(stored)
    merged, left_out = merge_attributes(old, entry.attributes)
    if left_out:
        report.notes.append(
            Note(entry.row, f"{entry.email} has {len(merged)} attributes, the most kept: "
                 f"{', '.join(repr(n) for n in left_out)} not kept")
        )  # fmt: skip
    changed = [n for n, v in merged.items() if old.get(n) != v]
    if not changed:
        return None
    shown = ", ".join(changed[:10]) + (
        f" and {len(changed) - 10} more" if len(changed) > 10 else ""
    )
    return merged, f"attributes set: {shown}"


def upsert(
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
                    Subscriber.id,
                    Subscriber.email_key,
                    Subscriber.status,
                    Subscriber.name,
                    Subscriber.attributes,
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
            if entry.attributes:
                attributes = _merged_attributes(row.attributes, entry, report)
                if attributes is not None:
                    change["attributes"] = dump_attributes(attributes[0])
                    event(row.id, "attributes", f"{attributes[1]} ({source})")
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
