import json
import shutil
from pathlib import Path

from conftest import DATA, NEWSLETTER, Cli
from typer.testing import CliRunner

from digest_mailer.cli import app

runner = CliRunner()


def setup(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    config = tmp_path / "config.toml"
    config.write_text(NEWSLETTER + extra, "utf-8")
    issue = tmp_path / "vol-3.1.txt"
    shutil.copy(DATA / "issues" / "digest-vol-3.1.txt", issue)
    return config, issue


def test_compose_writes_files_next_to_the_issue(tmp_path: Path) -> None:
    config, issue = setup(tmp_path)
    result = runner.invoke(app, ["--config", str(config), "compose", str(issue)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "vol-3.1"
    assert sorted(p.name for p in out.iterdir()) == ["issue.html", "issue.txt", "preview.eml"]
    assert "fingerprint " in result.stdout
    assert "warning: placeholder link 'maintenance funding'" in result.stderr
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    again = runner.invoke(
        app, ["--config", str(config), "compose", str(issue), "--out", str(tmp_path / "b")]
    )
    assert again.exit_code == 0
    assert first == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}


def test_compose_json(tmp_path: Path) -> None:
    config, issue = setup(tmp_path)
    result = runner.invoke(app, ["--config", str(config), "compose", str(issue), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert len(data["fingerprint"]) == 64
    assert data["subject"] == "Transit Policy Weekly, Vol 3.1 — January 9, 2024"
    assert data["html_bytes"] == (tmp_path / "vol-3.1" / "issue.html").stat().st_size
    assert [(f["level"], f["code"]) for f in data["lint"]] == [
        ("warning", "placeholder-link"), ("warning", "credit-without-image")
    ]  # fmt: skip


def test_compose_lint_error_exits_non_zero(tmp_path: Path) -> None:
    config, issue = setup(tmp_path, '\ntemplates = "tpl"\n')
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "footer.html.j2").write_text("<tr><td>no way out</td></tr>\n")
    result = runner.invoke(app, ["--config", str(config), "compose", str(issue)])
    assert result.exit_code == 4
    assert "error: the HTML template lacks the unsubscribe link" in result.stderr


def test_compose_bad_input_is_one_line(tmp_path: Path) -> None:
    config, issue = setup(tmp_path, '\ntemplates = "tpl"\n')
    result = runner.invoke(app, ["--config", str(config), "compose", str(tmp_path / "nope.md")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "cannot read" in result.stderr and "Traceback" not in result.output
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "issue.html.j2").write_text(
        '{% extends "base.html.j2" %}\n{% block content %}\n{{ x(\n'
    )
    result = runner.invoke(app, ["--config", str(config), "compose", str(issue)])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and "issue.html.j2 line 3" in line
    assert not (tmp_path / "vol-3.1").exists()  # nothing half-written


def test_word_drafts_are_read_whatever_their_encoding(tmp_path: Path) -> None:
    """Issue 14, item 4: Windows-1252 (Word's smart quotes), UTF-16 and UTF-8 with a BOM
    compose to exactly what the UTF-8 original composes to."""
    text = (
        "Transit Digest\nVol: 7.1\nDecember 2, 2026\n\nHeadlines:\n- \u201cBus lanes\u201d \u2013 "
        "what works\n\nDetails:\n- The city\u2019s **bus lanes** \u2014 a review.\n\n---\n\n"
        "\u201cTo receive this digest by email, write to weekly@transit-lab.test.\u201d\n"
    )
    config, _ = setup(tmp_path)
    cli = Cli(config)
    outputs = {}
    for name, data in (
        ("utf8", text.encode("utf-8")),
        ("cp1252", text.encode("cp1252")),
        ("bom", b"\xef\xbb\xbf" + text.encode("utf-8")),
        ("utf16", text.encode("utf-16")),
    ):
        path = tmp_path / f"{name}.txt"
        path.write_bytes(data)
        result = cli.ok("compose", str(path), "--out", str(tmp_path / name))
        assert ("read as Windows-1252" in result.stderr) == (name == "cp1252")
        outputs[name] = [(tmp_path / name / f).read_bytes() for f in ("issue.html", "issue.txt")]
    assert outputs["cp1252"] == outputs["utf8"] == outputs["bom"] == outputs["utf16"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\u00e9 digest\n\nText \u00e9t\u00e9.\n".encode("latin-1"))
    assert "read as" not in cli.ok("compose", str(latin), "--encoding", "latin-1").stderr
    bad = cli("compose", str(latin), "--encoding", "klingon")
    assert bad.exit_code == 1 and "--encoding 'klingon'" in bad.stderr
    undecodable = tmp_path / "undecodable.txt"
    undecodable.write_bytes(b"Title\n\nbad \x81 byte\n")
    result = cli("compose", str(undecodable))
    assert result.exit_code == 1 and "line 3" in result.stderr and "0x81" in result.stderr
    assert "--encoding" in result.stderr and "Traceback" not in result.output


def test_screenshots_without_chromium_are_one_line_and_compose_succeeds(tmp_path: Path) -> None:
    import subprocess
    import sys

    config, issue = setup(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "digest_mailer", "--config", str(config), "compose", str(issue),
         "--screenshots"],
        capture_output=True, text=True, timeout=120, env={"PATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notice = [line for line in result.stderr.splitlines() if line.startswith("no pictures")]
    assert len(notice) == 1 and "apt-get install chromium" in notice[0]
    assert not list((tmp_path / "vol-3.1").glob("*.png"))
