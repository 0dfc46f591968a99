import json
import shutil
from pathlib import Path

from conftest import DATA, NEWSLETTER
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
    assert data["lint"] == [
        {"level": "warning", "code": "placeholder-link",
         "message": data["lint"][0]["message"]}
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
