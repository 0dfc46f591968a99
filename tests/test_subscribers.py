from pathlib import Path

import pytest
from sqlalchemy import func, select

from digest_mailer import subscribers as subs
from digest_mailer.db import Store
from digest_mailer.errors import InputError, NotFoundError
from digest_mailer.models import Event, Subscriber


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def counts(store: Store) -> tuple[int, int]:
    with store.Session() as session:
        return (
            session.scalar(select(func.count()).select_from(Subscriber)),
            session.scalar(select(func.count()).select_from(Event)),
        )


def test_add_is_case_insensitive_and_records_events(store: Store) -> None:
    with store.Session.begin() as session:
        report = subs.add_subscribers(
            session, ["Ana.Lima@Corp.TEST"], name="Ana Lima", allow_test_domains=True
        )
        assert report.added == 1
        again = subs.add_subscribers(session, ["ana.lima@corp.test"], allow_test_domains=True)
        assert (again.added, again.unchanged) == (0, 1)
    with store.Session() as session:
        ana = subs.get_subscriber(session, "ANA.LIMA@corp.test")
        assert ana.email == "Ana.Lima@corp.test"
        assert (ana.status, ana.source, ana.name) == ("active", "cli", "Ana Lima")
        assert [(e.kind, e.new_status) for e in ana.events] == [("created", "active")]


def test_add_refuses_all_when_one_address_is_invalid(store: Store) -> None:
    with pytest.raises(InputError, match="'nobody@' is not a valid email address"):
        with store.Session.begin() as session:
            subs.add_subscribers(session, ["ok@corp.test", "nobody@"], allow_test_domains=True)
    assert counts(store) == (0, 0)


def test_reserved_domains_need_the_setting(store: Store) -> None:
    with store.Session.begin() as session, pytest.raises(InputError, match="special-use"):
        subs.add_subscribers(session, ["ana@corp.test"])


def test_remove_keeps_history_and_add_does_not_reactivate(store: Store) -> None:
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["bo@corp.test"], allow_test_domains=True)
        subscriber, changed = subs.remove_subscriber(session, "bo@corp.test", reason="by phone")
        assert changed and subscriber.status == "unsubscribed"
        assert subs.remove_subscriber(session, "bo@corp.test")[1] is False
        report = subs.add_subscribers(session, ["bo@corp.test"], allow_test_domains=True)
        assert (report.skipped, report.added) == (1, 0)
        assert subs.get_subscriber(session, "bo@corp.test").status == "unsubscribed"
        report = subs.add_subscribers(
            session, ["bo@corp.test"], allow_test_domains=True, resubscribe=True
        )
        assert report.updated == 1
    with store.Session() as session:
        bo = subs.get_subscriber(session, "bo@corp.test")
        assert bo.status == "active" and bo.unsubscribed_at is None
        assert [(e.old_status, e.new_status) for e in bo.events if e.kind == "status"] == [
            ("active", "unsubscribed"),
            ("unsubscribed", "active"),
        ]
        assert "by phone" in bo.events[1].detail


def test_purge_erases_person_and_leaves_anonymous_record(store: Store) -> None:
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["cy@corp.test"], list_name=None, allow_test_domains=True)
        subs.remove_subscriber(session, "cy@corp.test")
    with store.Session.begin() as session:
        subs.purge_subscriber(session, "cy@corp.test")
    with store.Session() as session:
        assert subs.find_subscriber(session, "cy@corp.test") is None
        events = session.scalars(select(Event)).all()
        assert [(e.kind, e.subscriber_id) for e in events] == [("purged", None)]
        assert "cy@" not in events[0].detail


def test_unknown_list_and_subscriber(store: Store) -> None:
    with store.Session.begin() as session:
        with pytest.raises(NotFoundError, match="no list named 'board'"):
            subs.add_subscribers(
                session, ["a@corp.test"], list_name="board", allow_test_domains=True
            )
        with pytest.raises(NotFoundError, match="no subscriber"):
            subs.remove_subscriber(session, "ghost@corp.test")
    assert counts(store) == (0, 0)


def test_list_filters(store: Store) -> None:
    with store.Session.begin() as session:
        subs.create_list(session, "seed")
        subs.add_subscribers(session, ["a@corp.test", "b@corp.test"], allow_test_domains=True)
        subs.add_subscribers(session, ["c@corp.test"], list_name="seed", allow_test_domains=True)
        subs.remove_subscriber(session, "b@corp.test")
    with store.Session() as session:
        every = subs.list_subscribers(session)
        assert [s.email for s in every] == ["a@corp.test", "b@corp.test", "c@corp.test"]
        active = subs.list_subscribers(session, status="active")
        assert [s.email for s in active] == ["a@corp.test", "c@corp.test"]
        assert [s.email for s in subs.list_subscribers(session, list_name="seed")] == [
            "c@corp.test"
        ]


# ------------------------------------------------------------------ import


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Email Address,First Name,Last Name\nana@corp.test,Ana,Lima\nbo@corp.test,Bo,\n", "utf-8"),
        ("\ufeffe-mail;name\r\nana@corp.test;Ana Lima\r\n\r\nbo@corp.test;Bo\r\n", "utf-8"),
        ("EMAIL\tName\nana@corp.test\tAna Lima\nbo@corp.test\tBo\n", "utf-16"),
        ('"email","name"\n"ana@corp.test","Ana Lima"\n\n\n"bo@corp.test","Bo"\n', "utf-8"),
        ("ana@corp.test,Ana Lima\nbo@corp.test,Bo\n", "utf-8"),
        ("name,email\nAna Lima,ana@corp.test\nBo,bo@corp.test\n", "utf-8"),
        ("email\nAna Lima <ana@corp.test>\nbo@corp.test\n", "utf-8"),
    ],
    ids=["mailchimp", "bom-semicolon-crlf", "utf16-tab", "quoted-blank-lines", "no-header",
         "name-first", "display-name-in-cell"],
)  # fmt: skip
def test_import_reads_what_spreadsheets_export(
    store: Store, tmp_path: Path, text: str, encoding: str
) -> None:
    path = write(tmp_path / "in.csv", text, encoding)
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
    assert report.summary()["added"] == 2 and not report.invalid
    with store.Session() as session:
        rows = {s.email: (s.name, s.source) for s in subs.list_subscribers(session)}
    assert rows["ana@corp.test"] == ("Ana Lima", "import")
    assert "bo@corp.test" in rows


def test_import_semicolon_with_quoted_commas(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", 'email;name\nana@corp.test;"Lima, Ana"\nbo@corp.test;Bo\n')
    with store.Session.begin() as session:
        subs.import_csv(session, path, allow_test_domains=True)
    with store.Session() as session:
        assert subs.get_subscriber(session, "ana@corp.test").name == "Lima, Ana"


def test_import_merges_reports_and_never_reactivates(store: Store, tmp_path: Path) -> None:
    with store.Session.begin() as session:
        subs.create_list(session, "board")
        subs.add_subscribers(
            session, ["old@corp.test", "gone@corp.test", "same@corp.test"], allow_test_domains=True
        )
        subs.add_subscribers(
            session, ["same@corp.test"], list_name="board", allow_test_domains=True
        )
        subs.remove_subscriber(session, "gone@corp.test", reason="asked")
    path = write(
        tmp_path / "in.csv",
        "email,name\n"
        "new@corp.test,\n"  # row 2: added
        "NEW@corp.test,Nia New\n"  # row 3: duplicate, fills the name
        "old@corp.test,Olga Old\n"  # row 4: updated (name, list)
        "gone@corp.test,Gone\n"  # row 5: skipped (unsubscribed)
        "same@corp.test,\n"  # row 6: unchanged (already on board, no name)
        "not-an-address,X\n"  # row 7: invalid
        ",nameless\n"  # row 8: invalid (empty)
        "ann@@corp.test,Ann\n",  # row 9: invalid
    )
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, list_name="board", allow_test_domains=True)
    assert report.summary() == {
        "added": 1, "updated": 1, "unchanged": 1, "skipped": 1, "duplicates": 1, "invalid": 3,
    }  # fmt: skip
    assert [(i.row, i.value) for i in report.invalid] == [
        (7, "not-an-address"),
        (8, ""),
        (9, "ann@@corp.test"),
    ]
    assert all(i.reason for i in report.invalid)
    with store.Session() as session:
        assert subs.get_subscriber(session, "new@corp.test").name == "Nia New"
        old = subs.get_subscriber(session, "old@corp.test")
        assert old.name == "Olga Old" and [m.name for m in old.lists] == ["board"]
        assert {e.kind for e in old.events} == {"created", "name", "list"}
        assert subs.get_subscriber(session, "gone@corp.test").status == "unsubscribed"
    with store.Session.begin() as session:
        report = subs.import_csv(
            session, path, list_name="board", allow_test_domains=True, resubscribe=True
        )
        assert report.summary()["skipped"] == 0
        assert subs.get_subscriber(session, "gone@corp.test").status == "active"


def test_import_without_email_column_writes_nothing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "name,phone\nAna,123\n")
    with pytest.raises(InputError, match="no email column.*'name', 'phone'"):
        with store.Session.begin() as session:
            subs.import_csv(session, path, allow_test_domains=True)
    assert counts(store) == (0, 0)


def test_import_error_part_way_leaves_store_as_it_was(store: Store, tmp_path: Path) -> None:
    good = "".join(f"p{i}@corp.test,Person {i}\n" for i in range(5000))
    path = tmp_path / "in.csv"
    path.write_bytes(("email,name\n" + good).encode() + b"caf\xe9@corp.test,Latin-1\n")
    with pytest.raises(InputError, match=r"not valid utf-8 text \(line 5002.*--encoding cp1252"):
        with store.Session.begin() as session:
            subs.import_csv(session, path, allow_test_domains=True)
    assert counts(store) == (0, 0)
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True, encoding="cp1252")
    assert report.added == 5001
    with store.Session() as session:
        assert subs.get_subscriber(session, "café@corp.test").name == "Latin-1"


def test_import_large_file_in_chunks(store: Store, tmp_path: Path) -> None:
    n = subs.CHUNK * 2 + 17
    path = write(tmp_path / "in.csv", "email\n" + "".join(f"u{i}@corp.test\n" for i in range(n)))
    with store.Session.begin() as session:
        assert subs.import_csv(session, path, allow_test_domains=True).added == n
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
        assert (report.added, report.unchanged) == (0, n)
    assert counts(store) == (n, n)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\x00\x01\x02binary", "binary"), (b"\n\n  \n", "is empty")],
)
def test_import_refuses_unusable_files(
    store: Store, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with store.Session.begin() as session, pytest.raises(InputError, match=message):
        subs.import_csv(session, path, allow_test_domains=True)


def test_import_missing_file(store: Store, tmp_path: Path) -> None:
    with store.Session.begin() as session, pytest.raises(InputError, match="cannot read"):
        subs.import_csv(session, tmp_path / "absent.csv")


def test_sniff_delimiter() -> None:
    assert subs.sniff_delimiter("a;b\nc;d\n") == ";"
    assert subs.sniff_delimiter("a\tb\nc\td\n") == "\t"
    assert subs.sniff_delimiter('a,b\n"x;y",d\n') == ","
    assert subs.sniff_delimiter("only@corp.test\nother@corp.test\n") == ","


def test_export_round_trip(store: Store, tmp_path: Path) -> None:
    import io

    with store.Session.begin() as session:
        subs.create_list(session, "seed")
        subs.add_subscribers(session, ["zoë@corp.test"], name="Zoë, Q", list_name="seed",
                             allow_test_domains=True)  # fmt: skip
        buffer = io.StringIO()
        assert subs.export_csv(session, buffer) == 1
    path = write(tmp_path / "out.csv", buffer.getvalue())
    entries, invalid = subs.read_csv(path, allow_test_domains=True)
    assert [(e.email, e.name) for e in entries] == [("zoë@corp.test", "Zoë, Q")]
    assert not invalid
    assert "seed" in buffer.getvalue().splitlines()[1]
