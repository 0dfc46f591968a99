"""``archive export DIR``: the archive as static files for the think-tank's website.

It writes ``index.html``, ``SLUG/index.html`` per published issue, ``feed.atom`` and
``web.css``: the very pages ``serve`` answers (:mod:`digest_mailer.archive.site`), with
relative links, so the folder works wherever it is put. The same archive gives the same
bytes: nothing in the files depends on when or where they were written.

The folder is replaced whole: the new export is written beside it and moved into place,
so an issue unpublished since the last export disappears from it, and a failed export
leaves the previous one as it was. A folder that is neither empty nor an earlier export
(its marker file :data:`MARKER`) is refused, never overwritten. Files are private
(0600, folders 0700) like everything the tool writes; publish them with, for example,
``rsync --chmod=D755,F644``.
"""

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from digest_mailer.archive.paths import archive_slug
from digest_mailer.archive.render import PublicIssue
from digest_mailer.archive.site import ArchiveSite
from digest_mailer.composer import default_templates
from digest_mailer.config import Config
from digest_mailer.errors import InputError

MARKER = ".digest-mailer-archive"
MARKER_TEXT = b"This folder is written by `digest-mailer archive export`; it is replaced whole.\n"


def check_base_url(base_url: str) -> str:
    """An absolute http(s) address with no query or fragment, ending in ``/``."""
    parts = urlsplit(base_url)
    try:
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError:
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or any(c.isspace() or c in "\\\"'<>" for c in base_url)
    ):
        raise InputError(
            f"--base-url {base_url!r}: give the absolute address the folder will have, "
            "such as https://thinktank.test/digest/"
        )
    return base_url.rstrip("/") + "/"


def _files(issues: list[PublicIssue], site: ArchiveSite) -> dict[str, bytes]:
    files = {
        MARKER: MARKER_TEXT,
        "index.html": site.index_page(issues).encode("utf-8"),
        "feed.atom": site.feed(issues),
        "web.css": (default_templates() / "web" / "web.css").read_bytes(),
    }
    for position, issue in enumerate(issues):
        files[f"{archive_slug(issue.issue_id)}/index.html"] = site.issue_page(
            issues, position
        ).encode("utf-8")
    return files


def _refuse_foreign(target: Path) -> None:
    """An export replaces only an empty folder or one it wrote (its marker, unchanged)."""
    try:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise InputError(f"{target} exists and is not a folder")
        marker = target / MARKER
        ours = marker.is_file() and not marker.is_symlink() and marker.read_bytes() == MARKER_TEXT
        foreign = target.is_dir() and any(target.iterdir()) and not ours
    except OSError as exc:
        raise InputError(f"cannot read {target}: {exc.strerror or exc}") from None
    if foreign:
        raise InputError(
            f"{target} is not empty and not an earlier archive export (no {MARKER}); "
            "give an empty or new folder"
        )


def export_archive(
    issues: list[PublicIssue], config: Config, target: Path, base_url: str = ""
) -> int:
    """Write the archive of ``issues`` (newest first) into ``target``; the number of
    issue pages."""
    if not base_url and config.newsletter.public_url:
        base_url = config.newsletter.public_url.rstrip("/") + "/archive/"
    site = ArchiveSite(config, check_base_url(base_url) if base_url else "")
    files = _files(issues, site)
    target = target.absolute()
    _refuse_foreign(target)
    fresh: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        for name, data in sorted(files.items()):
            path = fresh / name
            path.parent.mkdir(exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
        fresh.rename(target)
        fresh = None
        if old is not None:
            shutil.rmtree(old)
    except OSError as exc:
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        raise InputError(f"cannot write the archive to {target}: {exc.strerror or exc}") from None
    return len(issues)
