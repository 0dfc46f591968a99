"""deploy/: what can be checked without Docker or a running systemd. The unit passes
`systemd-analyze verify` (where installed) and its ExecStart is a valid `digest-mailer
run` command line; the compose file is YAML with PostgreSQL (a volume, a health check)
and the service; the Dockerfile runs a command that exists, as a user without
privileges, on a Debian slim Python image."""

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "digest-mailer.service"
INSTALLED = "/opt/digest-mailer/venv/bin/digest-mailer"


def cli_help(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``digest-mailer ARGS --help``: exit 0 only when every option in ARGS is valid."""
    return subprocess.run(
        [sys.executable, "-m", "digest_mailer", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text("utf-8"))
    return parser


def test_the_unit_runs_digest_mailer_run_with_valid_options() -> None:
    service = unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0] == INSTALLED and command[1] == "run"
    result = cli_help(command[1:])
    assert result.returncode == 0, result.stderr
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert 30 <= int(service["TimeoutStopSec"]) <= 300
    assert service["EnvironmentFile"].startswith("/etc/digest-mailer/")
    assert "0600" in UNIT.read_text("utf-8")
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "digest-mailer" and service["User"] != "root"
    assert "DIGEST_MAILER_SECRET=" not in service.get("Environment", "")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    script = Path(sys.executable).parent / "digest-mailer"
    if not script.exists():
        pytest.skip("no digest-mailer script beside this Python")
    copy = tmp_path / "digest-mailer.service"  # the installed path is this checkout's here
    copy.write_text(UNIT.read_text("utf-8").replace(INSTALLED, str(script)), "utf-8")
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    if "Failed to" in result.stderr and "bus" in result.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_the_compose_file_runs_the_service_beside_postgresql() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text("utf-8"))
    services = compose["services"]
    assert set(services) == {"db", "init", "digest-mailer"}
    db = services["db"]
    assert db["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert set(compose["volumes"]) >= {"pgdata", "state"}
    app = services["digest-mailer"]
    assert app["command"][:2] == ["digest-mailer", "run"]
    assert cli_help(app["command"][1:]).returncode == 0
    assert services["init"]["command"] == ["digest-mailer", "init"]
    assert app["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "init": {"condition": "service_completed_successfully"},
    }
    assert app["stop_signal"] == "SIGTERM"
    assert int(re.fullmatch(r"(\d+)s", app["stop_grace_period"]).group(1)) >= 60  # type: ignore[union-attr]
    assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert all(e.endswith(".env") for e in app["env_file"] + db["env_file"])
    assert "environment" not in app  # secrets come from the 0600 env files only


def test_the_dockerfile_runs_an_existing_command_as_a_user_without_privileges() -> None:
    text = (DEPLOY / "Dockerfile").read_text("utf-8").replace("\\\n", " ")  # continued lines
    instructions = re.findall(r"^([A-Z]+)\s+(.*)$", text, re.M)
    images = [value.split()[0] for kind, value in instructions if kind == "FROM"]
    assert images and all(re.fullmatch(r"python:3\.\d+-slim(-\w+)?", i) for i in images), images
    users = [value for kind, value in instructions if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(kind == "RUN" and "pip install ." in value for kind, value in instructions)
    cmd = json.loads(next(value for kind, value in instructions if kind == "CMD"))
    assert cmd[:2] == ["digest-mailer", "run"]
    result = cli_help(cmd[1:])
    assert result.returncode == 0, result.stderr
    copied = [value.split()[0] for kind, value in instructions if kind == "COPY"]
    root = DEPLOY.parent
    assert all((root / p).exists() for p in copied if not p.startswith("--")), copied
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text("utf-8")
    assert "!digest_mailer/" in ignore and "config.toml" not in ignore.replace("a config", "")
