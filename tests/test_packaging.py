"""The wheel works outside the checkout.

It is built from a copy of the source tree without build isolation (so nothing is
downloaded: setuptools and build come from the test extra), must build without a warning,
must hold every module, migration and template of the tree, and is installed into a fresh
virtualenv. That virtualenv reaches the dependencies through a .pth line naming the project
virtualenv's site-packages: Python does not read the .pth files inside a folder added that
way, so the editable install's finder (``__editable__.digest_mailer-*.pth``) stays off and
``digest_mailer`` can only come from the wheel. Then ``digest-mailer init`` and ``compose``
run there, in a scratch folder, without PYTHONPATH.
"""

import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    "node_modules",
    "tests",
    "benchmarks",
    "config.toml",
    "*.db",
    "*.db-*",
)

# what the build log may say without it being a problem: the names of files it copies
FILE_LOG = re.compile(r"^\s*(copying|adding|creating|removing|byte-compiling) ")
WARNING = re.compile(r"warn|deprecat|^\s*!!\s*$", re.I)

ISSUE = """\
Wheel Digest
Vol: 9.1
March 3, 2026

Headlines:
- Harbour councils agree a shared flood fund
- Regulator opens a consultation on leakage

Details:
- Eleven councils signed a memorandum creating a shared fund for flood defences.
- The consultation on leakage targets closes on 14 April.

"To receive this digest by email, write to digest@wheel-lab.test."
"""


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
        f"stderr:\n{result.stderr[-4000:]}\nstdout:\n{result.stdout[-4000:]}"
    )
    return result


def warning_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if WARNING.search(line) and not FILE_LOG.match(line)]


def test_warning_lines_finds_setuptools_banners() -> None:
    log = (
        "copying digest_mailer/warnings.py -> build/lib\n"
        "  /x/setuptools/dist.py:1: SetuptoolsDeprecationWarning: License classifiers\n"
        "  !!\n"
        "warning: no files found matching 'x'\n"
        "Successfully built digest_mailer-0.1.0-py3-none-any.whl\n"
    )
    assert warning_lines(log) == log.splitlines()[1:4]


def source_files(root: Path, wheel_names: set[str]) -> tuple[list[str], list[str]]:
    """Files of the tree at ``root`` that belong in the wheel, as wheel paths: what is
    missing, and what was compared."""
    expected = []
    for folder, package in (
        ("digest_mailer", "digest_mailer"),
        ("templates", "digest_mailer/default_templates"),
    ):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                expected.append(f"{package}/{path.relative_to(root / folder).as_posix()}")
    return [name for name in expected if name not in wheel_names], expected


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SOURCE_IGNORE)
    dist = tmp_path / "dist"
    # PYTHONDONTWRITEBYTECODE (set on some machines) makes setuptools print "warning:
    # byte-compiling is disabled"; that is the machine, not the project.
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")
    }
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    log = build.stdout + build.stderr
    assert build.returncode == 0, (
        f"the wheel did not build (needs `pip install -e '.[test]'`):\n{log[-4000:]}"
    )
    assert warning_lines(log) == [], "the build printed warnings:\n" + "\n".join(warning_lines(log))
    (wheel,) = dist.glob("digest_mailer-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    missing, expected = source_files(src, names)
    assert len(expected) > 40, expected
    assert missing == [], (
        f"in the tree but not in the wheel ([tool.setuptools] packages / package-data): {missing}"
    )
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)
    assert "License-Expression: MIT" in metadata
    assert not any(n.startswith(("tests/", "templates/")) for n in names), sorted(names)

    # a virtualenv of its own; the dependencies from the project's through a .pth line
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    vpy = venv / "bin" / "python"
    site = Path(
        run(
            [str(vpy), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
        ).stdout.strip()
    )
    project_site = Path(sysconfig.get_path("purelib"))
    assert list(project_site.glob("__editable__*digest_mailer*.pth")), (
        "expected the project venv to hold the editable install this test keeps out"
    )
    (site / "zz_project_dependencies.pth").write_text(f"{project_site}\n", encoding="utf-8")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(vpy),
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            str(wheel),
        ]
    )

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DIGEST_MAILER_", "PYTHONPATH", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin"
    env["DIGEST_MAILER_SECRET"] = secrets.token_hex(32)

    where = run(
        [
            str(vpy),
            "-c",
            "import digest_mailer, digest_mailer.inbox, digest_mailer.bounces, sys\n"
            "from digest_mailer.composer import default_templates\n"
            "from importlib.resources import files\n"
            "print(digest_mailer.__file__); print(default_templates());"
            "print(files('digest_mailer') / 'migrations')\n"
            "print(any('__editable__' in repr(f) for f in sys.meta_path))",
        ],
        cwd=scratch,
        env=env,
    ).stdout.split("\n")
    module, templates, migrations, editable_finder = where[:4]
    for path in (module, templates, migrations):
        assert Path(path).is_relative_to(site), f"{path} is not from the wheel in {site}"
    assert editable_finder == "False"
    assert (Path(templates) / "requests" / "confirm.txt.j2").is_file()
    assert (Path(templates) / "web" / "web.css").is_file()
    assert sorted(p.name for p in (Path(migrations) / "versions").glob("0*.py"))

    (scratch / "config.toml").write_text(
        '[database]\nurl = "sqlite:///store/digest.db"\n\n'
        '[newsletter]\nfrom_address = "digest@wheel-lab.test"\n'
        'request_address = "digest@wheel-lab.test"\npostal_address = "Wheel Lab, 2 Quay Road"\n',
        encoding="utf-8",
    )
    (scratch / "vol-9.1.txt").write_text(ISSUE, encoding="utf-8")
    cli = str(venv / "bin" / "digest-mailer")
    assert Path(cli).is_file(), "the wheel installed no digest-mailer script"
    init = run([cli, "init"], cwd=scratch, env=env)
    assert (scratch / "store" / "digest.db").is_file(), init.stdout
    run([cli, "init"], cwd=scratch, env=env)  # upgrading an up-to-date store is harmless
    compose = run([cli, "compose", "vol-9.1.txt"], cwd=scratch, env=env)
    html = (scratch / "vol-9.1" / "issue.html").read_text(encoding="utf-8")
    assert "Harbour councils agree a shared flood fund" in html, compose.stdout
    assert "Wheel Lab, 2 Quay Road" in html  # the footer template, from the wheel
    run([str(vpy), "-m", "digest_mailer", "--version"], cwd=scratch, env=env)
