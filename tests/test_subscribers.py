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
    # a quote left open in the last row: the cell grows past what csv reads
    path = write(tmp_path / "in.csv", "email,name\n" + good + 'z@corp.test,"' + "z" * 140_000)
    with pytest.raises(InputError, match=r"in.csv line 5002: not readable as CSV: field larger"):
        with store.Session.begin() as session:
            subs.import_csv(session, path, allow_test_domains=True)
    assert counts(store) == (0, 0)


def test_a_row_that_is_not_utf8_is_reported_at_its_row_and_byte(
    store: Store, tmp_path: Path
) -> None:
    head = b"email,name\nana@corp.test,Ana\nbo@corp.test,Bo\n"
    bad = b"zoe@corp.test,Zo\xe9\n"  # Latin-1, in a UTF-8 file
    path = tmp_path / "members.csv"
    path.write_bytes(head + bad + b"cy@corp.test,Cy\xc3\xa9\n")
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
    offset = len(head) + bad.index(b"\xe9")
    [invalid] = report.invalid
    assert invalid.row == 4 and invalid.value == ""
    assert invalid.message == (
        f"{path}: row 4 is not valid UTF-8 (byte 0xe9 at offset {offset}); "
        "save the file as UTF-8 or pass --encoding cp1252"
    )
    assert (report.added, report.rows, report.size) == (3, 4, path.stat().st_size)
    with store.Session() as session:
        assert subs.find_subscriber(session, "zoe@corp.test") is None
        assert subs.get_subscriber(session, "cy@corp.test").name == "Cyé"
    # the option names the encoding of that row; the UTF-8 rows stay UTF-8
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True, encoding="cp1252")
    assert (report.added, report.unchanged, report.invalid) == (1, 3, [])
    assert [n.message for n in report.notes] == ["1 row(s) not valid UTF-8 read as cp1252 (row 4)"]
    with store.Session() as session:
        assert subs.get_subscriber(session, "zoe@corp.test").name == "Zoé"
        assert subs.get_subscriber(session, "cy@corp.test").name == "Cyé"


def test_offsets_count_the_bom_and_rows_count_multiline_cells(store: Store, tmp_path: Path) -> None:
    # the old decoder reported the byte three places early after a BOM (0x52, not 0xe9)
    data = (
        b"\xef\xbb\xbfemail,name,Note\n"
        b'ana@corp.test,Ana,"two\nlines"\n'
        b"\n"  # a blank line is a row in a spreadsheet too
        b"RUTH@corp.test,Ruth Zo\xe9\n"
        b"bo@corp.test,Bo,\n"
    )
    path = tmp_path / "members.csv"
    path.write_bytes(data)
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
    [invalid] = report.invalid
    assert invalid.row == 4
    offset = data.index(b"\xe9")
    assert f"(byte 0xe9 at offset {offset})" in invalid.reason
    assert report.added == 2
    with store.Session() as session:
        assert subs.get_subscriber(session, "ana@corp.test").attributes == '{"Note":"two\\nlines"}'


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "iso-8859-15"])
def test_single_byte_encoding_with_a_utf8_bom(store: Store, tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "in.csv"
    # a UTF-8 file (BOM, "Zoë") with one row pasted from a Latin-1 source ("José")
    path.write_bytes(b"\xef\xbb\xbfemail,name\nzoe@corp.test,Zo\xc3\xab\njose@corp.test,Jos\xe9\n")
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True, encoding=encoding)
    assert (report.added, report.invalid) == (2, [])
    with store.Session() as session:
        names = {s.email: s.name for s in subs.list_subscribers(session)}
    assert names == {"zoe@corp.test": "Zoë", "jose@corp.test": "José"}


def test_whole_cp1252_file_and_unknown_encoding(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv", "Courriel;Prénom;Société\nzoe@corp.test;Zoé;Café ‘Ñ’\n", "cp1252"
    )
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True, encoding="cp1252")
    assert report.added == 1
    with store.Session() as session:
        zoe = subs.subscriber_dict(subs.get_subscriber(session, "zoe@corp.test"))
    assert zoe["attributes"] == {"Prénom": "Zoé", "Société": "Café ‘Ñ’"}
    with (
        store.Session.begin() as session,
        pytest.raises(InputError, match="unknown encoding 'klingon'"),
    ):
        subs.import_csv(session, path, allow_test_domains=True, encoding="klingon")


def test_header_that_is_not_text_refuses_the_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"email,Soci\xe9t\xe9\nana@corp.test,X\n")
    with pytest.raises(
        InputError, match=r"row 1 \(the header\) is not valid UTF-8 \(byte 0xe9 at offset 10\)"
    ):
        with store.Session.begin() as session:
            subs.import_csv(session, path, allow_test_domains=True)
    assert counts(store) == (0, 0)


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
    source = write(
        tmp_path / "members.csv",
        "Email Address;Name;Organisation ; Country;Notes\n"
        'zoë@corp.test;Zoë, Q;Transit Lab;PT;"first line\nsecond, line"\n'
        "bo@corp.test;Bo;;DE;\n"
        "cy@corp.test;Cy;;;\n",
    )
    with store.Session.begin() as session:
        subs.create_list(session, "seed")
        subs.import_csv(session, source, list_name="seed", allow_test_domains=True)
        subs.add_subscribers(session, ["dan@corp.test"], allow_test_domains=True)
        out = tmp_path / "out.csv"
        assert subs.export_csv_file(session, out) == 4
    assert out.stat().st_mode & 0o777 == 0o600
    lines = out.read_text("utf-8").splitlines()
    assert lines[0] == (
        "email,name,status,lists,source,created_at,unsubscribed_at,Organisation,Country,Notes"
    )
    assert lines[1].startswith("bo@corp.test,Bo,active,seed,import,") and lines[1].endswith(",,DE,")
    parsed = subs.read_csv(out, allow_test_domains=True)
    assert not parsed.invalid and not parsed.notes
    assert [(e.email, e.name, e.attributes) for e in parsed.entries] == [
        ("bo@corp.test", "Bo", {"Country": "DE"}),
        ("cy@corp.test", "Cy", {}),
        ("dan@corp.test", "", {}),
        ("zoë@corp.test", "Zoë, Q",
         {"Organisation": "Transit Lab", "Country": "PT", "Notes": "first line\nsecond, line"}),
    ]  # fmt: skip
    # importing the export again changes nothing
    with store.Session.begin() as session:
        report = subs.import_csv(session, out, allow_test_domains=True)
    assert report.summary()["unchanged"] == 4 and report.rows == 4
    with store.Session.begin() as session:
        assert subs.export_csv_file(session, tmp_path / "again.csv") == 4
    assert (tmp_path / "again.csv").read_bytes() == out.read_bytes()


def test_export_to_a_missing_folder_names_the_file(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "nope" / "x.csv"
    with store.Session.begin() as session:
        with pytest.raises(InputError) as caught:
            subs.export_csv_file(session, target)
    assert str(caught.value) == f"cannot write {target}: No such file or directory"
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with store.Session.begin() as session:
        with pytest.raises(InputError, match=f"cannot write {folder}: Is a directory"):
            subs.export_csv_file(session, folder)
    assert list(tmp_path.glob("**/.*partial")) == []


def test_reimport_merges_attributes_new_values_win(store: Store, tmp_path: Path) -> None:
    first = write(
        tmp_path / "a.csv", "email,Organisation,Country,Phone\nana@corp.test,Transit Lab,PT,123\n"
    )
    second = write(tmp_path / "b.csv", "email,Country,Team,Phone\nana@corp.test,ES,Buses,\n")
    with store.Session.begin() as session:
        subs.import_csv(session, first, allow_test_domains=True)
    with store.Session.begin() as session:
        report = subs.import_csv(session, second, allow_test_domains=True)
    assert (report.updated, report.unchanged) == (1, 0)
    with store.Session() as session:
        ana = subs.get_subscriber(session, "ana@corp.test")
        assert subs.subscriber_dict(ana)["attributes"] == {
            "Organisation": "Transit Lab", "Country": "ES", "Phone": "123", "Team": "Buses",
        }  # fmt: skip
        assert [e.detail for e in ana.events if e.kind == "attributes"] == [
            "attributes set: Country, Team (import)"
        ]
    with store.Session.begin() as session:
        assert subs.import_csv(session, second, allow_test_domains=True).unchanged == 1


def test_an_export_of_many_people_with_few_attributes_each_imports_whole(
    store: Store, tmp_path: Path
) -> None:
    """Two imports of 30 different columns each, exported (60 columns), import back with
    every attribute: the limit is per person, not per file."""
    header = ["email", *(f"A{i}" for i in range(30)), *(f"B{i}" for i in range(30))]
    alice = ["alice@corp.test", *(f"a{i}" for i in range(30)), *([""] * 30)]
    bob = ["bob@corp.test", *([""] * 30), *(f"b{i}" for i in range(30))]
    text = "\n".join(",".join(r) for r in (header, alice, bob)) + "\n"
    with store.Session.begin() as session:
        report = subs.import_csv(session, write(tmp_path / "in.csv", text), allow_test_domains=True)
    assert report.added == 2 and not report.notes
    with store.Session() as session:
        for address, n in (("alice@corp.test", 30), ("bob@corp.test", 30)):
            got = subs.subscriber_dict(subs.get_subscriber(session, address))["attributes"]
            assert len(got) == n, (address, got)


def test_a_repeated_email_header_is_named_not_swallowed(store: Store, tmp_path: Path) -> None:
    text = "email,name,email,name\nd1@corp.test,First,d2@corp.test,Second\n"
    with store.Session.begin() as session:
        report = subs.import_csv(session, write(tmp_path / "in.csv", text), allow_test_domains=True)
    assert report.added == 1
    assert any("is a second email column" in n.message for n in report.notes), report.notes


def test_attribute_limits(store: Store, tmp_path: Path) -> None:
    long_name = "N" * 150
    header = ["email", "name", "", long_name, *(f"c{i}" for i in range(60)), "c0"]
    row = ["ana@corp.test", "Ana", "stray", "x" * 1500, *(f"v{i}" for i in range(60)), "again"]
    path = write(tmp_path / "in.csv", ",".join(header) + "\n" + ",".join(row) + "\n")
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
    messages = [n.message for n in report.notes]
    assert "column 4 header 'NNNNNNNNNNNNNNNNNNNNNNNNNNNNNN'… cut to 100 characters" in messages
    # 50 filled attributes per person: columns are not counted, filled cells are (an
    # export has one column per attribute name over everyone)
    assert "1 row(s) have over 50 filled extra columns: the first 50 are kept (row 2)" in messages
    assert (
        f"column {'N' * 100!r}: 1 value(s) longer than 1000 characters cut to 1000 (row 2)"
        in messages
    )
    assert "cells in columns without a header were not kept (row 2)" in messages
    with store.Session() as session:
        attributes = subs.subscriber_dict(subs.get_subscriber(session, "ana@corp.test"))[
            "attributes"
        ]
    assert len(attributes) == 50
    assert attributes["N" * 100] == "x" * 1000
    assert attributes["c48"] == "v48" and "c49" not in attributes


def test_duplicate_headers_and_attribute_cap_on_merge(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "email,Phone,Phone\nana@corp.test,1,2\nANA@corp.test,,\n")
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
    assert [n.message for n in report.notes] == ["column 3 is a second 'Phone': kept as 'Phone 2'"]
    with store.Session() as session:
        ana = subs.subscriber_dict(subs.get_subscriber(session, "ana@corp.test"))
    assert ana["attributes"] == {"Phone": "1", "Phone 2": "2"}
    many = ",".join(f"a{i}" for i in range(49))
    path = write(tmp_path / "more.csv", f"email,{many}\nana@corp.test,{','.join('x' * 49)}\n")
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
    assert report.notes[0].row == 2
    assert report.notes[0].message.startswith(
        "ana@corp.test has 50 attributes, the most kept: 'a48'"
    )


def test_typos_are_imported_with_a_warning(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv",
        "email\nana@gmail.con\nbo@gmail.com\ncy@mail.com\ndan@gmx.net\neve@hotmial.com\n",
    )
    with store.Session.begin() as session:
        report = subs.import_csv(session, path)
    assert report.added == 5
    assert [(n.row, n.message) for n in report.notes] == [
        (2, "gmail.con looks like a typo for gmail.com (ana@gmail.con → ana@gmail.com?); "
            "imported as written"),
        (6, "hotmial.com looks like a typo for hotmail.com "
            "(eve@hotmial.com → eve@hotmail.com?); imported as written"),
    ]  # fmt: skip
    with store.Session.begin() as session:
        report = subs.add_subscribers(session, ["fay@outlok.com", "gil@outlook.com"])
    assert [n.message for n in report.notes] == [
        "outlok.com looks like a typo for outlook.com (fay@outlok.com → fay@outlook.com?); "
        "added as written"
    ]
    with store.Session() as session:
        assert subs.get_subscriber(session, "fay@outlok.com").status == "active"


def test_reserved_test_domain_rows_name_the_setting(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "email\nana@corp.test\nbo@example.org\n")
    with store.Session.begin() as session:
        report = subs.import_csv(session, path)
    assert report.added == 1
    [invalid] = report.invalid
    assert invalid.row == 2 and "[subscribers] allow_test_domains" in invalid.reason


def test_delete_unknown_list_does_not_suggest_creating_it(store: Store) -> None:
    with store.Session.begin() as session:
        subs.create_list(session, "seed")
        with pytest.raises(NotFoundError) as caught:
            subs.delete_list(session, "nope")
    assert str(caught.value) == "no list named 'nope' (lists: seed)"


def test_columns_the_importer_does_not_read_are_kept(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv",
        "Email,First Name,Last Name,Address,Status,Lists,E-mail 2\n"
        "ana@corp.test,Ana,Lima,9 Depot Road,unsubscribed,board,ana@home.test\n",
    )
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
    assert report.added == 1 and not report.notes
    with store.Session() as session:
        ana = subs.subscriber_dict(subs.get_subscriber(session, "ana@corp.test"))
    assert (ana["name"], ana["status"], ana["lists"]) == ("Ana Lima", "active", [])
    assert ana["attributes"] == {"Address": "9 Depot Road", "E-mail 2": "ana@home.test"}


@pytest.mark.parametrize(
    "header",
    [
        "Adresse e-mail;Nom",
        "Correo electrónico;Nombre",
        "メールアドレス;名前",
        "Your email address;Name",
    ],
)
def test_a_header_in_another_language_is_found_by_its_content(
    store: Store, tmp_path: Path, header: str
) -> None:
    rows = "zoe@corp.test;Zoé\nyann@corp.test;Yann\nxu@corp.test;Xu\n"
    path = write(tmp_path / "in.csv", f"{header}\n{rows}")
    with store.Session.begin() as session:
        report = subs.import_csv(session, path, allow_test_domains=True)
    assert report.added == 3 and not report.invalid
    assert any("found by its content" in n.message for n in report.notes)


def test_two_columns_of_addresses_are_not_guessed(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "Adresse;Autre\na@corp.test;b@corp.test\n")
    with store.Session.begin() as session, pytest.raises(InputError, match="no email column"):
        subs.import_csv(session, path, allow_test_domains=True)
