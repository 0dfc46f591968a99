"""Where an issue's archive page lives: its slug (one safe path segment) and its URL.

An issue id is one word of at most 100 characters, and may hold characters a path must
not (``/``, ``?``, ``%``) or be ``..``. Its slug is the id itself when that is plainly
safe, else ``issue-`` and a hash of the id: never a path that climbs out of the archive.
"""

import hashlib
import re

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_HASHED = re.compile(r"issue-[0-9a-f]{16}")
# the archive's own files: an issue named so would overwrite one in the export
RESERVED = frozenset({"index.html", "feed.atom", "web.css", ".digest-mailer-archive"})


def archive_slug(issue_id: str) -> str:
    """The id when plainly safe; else ``issue-`` and 16 hex digits of its SHA-256. An id
    that merely looks like such a hash, or names one of the archive's own files, is
    hashed too, so two issues never share a folder."""
    plain = (
        _SAFE.fullmatch(issue_id)
        and ".." not in issue_id
        and issue_id.lower() not in RESERVED
        and not _HASHED.fullmatch(issue_id)
    )
    if plain:
        return issue_id
    return "issue-" + hashlib.sha256(issue_id.encode("utf-8")).hexdigest()[:16]


def archive_url(public_url: str, issue_id: str) -> str:
    """The issue's page under ``[newsletter] public_url`` ("" when that is unset)."""
    if not public_url:
        return ""
    return f"{public_url.rstrip('/')}/archive/{archive_slug(issue_id)}/"
