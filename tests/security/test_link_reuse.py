"""Threat: a link that outlives its person. A purged subscriber's unsubscribe link must
match nobody, not the next person who gets the same id; ids are never reused; links in
mail sent before links were bound this way keep working."""

from pathlib import Path

from alembic import command
from sqlalchemy import select, text

from digest_mailer import db
from digest_mailer import subscribers as subs
from digest_mailer.models import Subscriber
from digest_mailer.send.envelope import unsubscribe_url
from digest_mailer.tokens import make_token, read_token, token_id

SECRET = b"reuse-test-secret-8c1f0e2d3b4a59687f6e5d4c"


def test_a_purged_persons_link_matches_nobody(store) -> None:  # type: ignore[no-untyped-def]
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["first@reuse.test"], allow_test_domains=True)
    with store.Session() as session:
        first = session.scalars(select(Subscriber)).one()
        assert len(first.link_salt) == 16
        link = make_token(SECRET, "unsubscribe", first.id, first.link_salt)
        old_id = first.id
    with store.Session.begin() as session:
        subs.purge_subscriber(session, "first@reuse.test")
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["second@reuse.test"], allow_test_domains=True)
    with store.Session() as session:
        second = session.scalars(select(Subscriber)).one()
        assert second.id > old_id  # the id is not reused (AUTOINCREMENT / a sequence)
        assert second.link_salt != first.link_salt
        # even a row that had the old id would not verify: the salt is the person's
        assert read_token(SECRET, "unsubscribe", link, second.link_salt) is None
        assert token_id(link) == old_id and session.get(Subscriber, old_id) is None


def test_imported_subscribers_get_salts_of_their_own(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"p{i}@reuse.test\n" for i in range(50)), "utf-8")
    with store.Session.begin() as session:
        subs.import_csv(session, people, allow_test_domains=True)
    with store.Session() as session:
        salts = session.scalars(select(Subscriber.link_salt)).all()
    assert len(salts) == 50 and len(set(salts)) == 50 and all(len(s) == 16 for s in salts)


def test_the_links_of_earlier_subscribers_survive_the_migration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    command.upgrade(db._alembic_config(engine), "0008")
    with engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO subscribers (id, email, email_key, name, status, source, "
                    "created_at, updated_at) VALUES (:id, :e, :e, '', 'active', 'cli', "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                ),
                {"id": n, "e": f"old{n}@reuse.test"},
            )
        conn.execute(text("INSERT INTO lists (id, name, description, created_at) "
                          "VALUES (1, 'board', '', '2026-01-01 00:00:00')"))  # fmt: skip
        conn.execute(text("INSERT INTO list_members VALUES (1, 3)"))
        conn.execute(text("DELETE FROM subscribers WHERE id = 3"))  # the highest id gone
        conn.execute(text("INSERT INTO list_members (list_id, subscriber_id) VALUES (1, 2)"))
    old_link = make_token(SECRET, "unsubscribe", 2)  # as mail sent before was signed
    db.upgrade(engine)
    with engine.connect() as conn:
        schema = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'subscribers'")
        ).scalar_one()
        members = conn.execute(text("SELECT list_id, subscriber_id FROM list_members")).all()
        salt = conn.execute(text("SELECT link_salt FROM subscribers WHERE id = 2")).scalar_one()
    assert "AUTOINCREMENT" in schema
    assert members == [(1, 2)]  # the rebuild cascaded nothing
    assert salt == "" and read_token(SECRET, "unsubscribe", old_link, salt) == 2
    store = db.open_store(url)
    ids = []
    for n in range(2):  # add the highest id, purge it, add again: the id moves on
        with store.Session.begin() as session:
            subs.add_subscribers(session, [f"new{n}@reuse.test"], allow_test_domains=True)
        with store.Session.begin() as session:
            ids.append(subs.get_subscriber(session, f"new{n}@reuse.test").id)
            subs.purge_subscriber(session, f"new{n}@reuse.test")
    store.dispose()
    engine.dispose()
    assert ids[1] == ids[0] + 1, ids


def test_the_send_signs_each_link_with_the_persons_salt(store) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer.config import Config, NewsletterConfig

    config = Config(newsletter=NewsletterConfig(public_url="https://digest.reuse.test"))
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["ana@reuse.test"], allow_test_domains=True)
    with store.Session() as session:
        ana = session.scalars(select(Subscriber)).one()
        url = unsubscribe_url(config, SECRET, ana.id, ana.link_salt)
    assert url is not None
    token = url.rsplit("/", 1)[1]
    assert read_token(SECRET, "unsubscribe", token, ana.link_salt) == ana.id
    assert read_token(SECRET, "unsubscribe", token) is None
