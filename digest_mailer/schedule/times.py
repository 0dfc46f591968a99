"""When a scheduled send is due: a local time in an IANA time zone, read strictly.

Pure: the standard library's :mod:`zoneinfo` (with the ``tzdata`` package where the
system has no zone files) and nothing from the store.

- ``--at`` is a wall-clock time, ``YYYY-MM-DD HH:MM`` (or ``HH:MM:SS``, or a ``T``
  between them), without an offset: the zone is ``--tz``, else the machine's own.
- A time that does not exist in the zone (the hour skipped when the clocks go forward,
  e.g. 02:30 in Europe/Berlin on the last Sunday of March) is refused, naming the gap.
- A time that happens twice (the hour repeated when the clocks go back) is the first
  of the two, in summer time; the answer shows the UTC time and the zone's abbreviation.
"""

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from digest_mailer.errors import InputError

FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
EXAMPLE = "2026-12-08 09:00"
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.I)


@dataclass(frozen=True)
class DueTime:
    """A due time: the instant (UTC) and the zone it was given in."""

    utc: datetime
    zone: str

    @property
    def local(self) -> datetime:
        return self.utc.astimezone(zone_info(self.zone))

    def describe(self) -> str:
        """``2026-12-08 09:00 JST (Asia/Tokyo), 2026-12-08 00:00 UTC``."""
        local = self.local
        form = "%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M"
        if self.zone == "UTC":
            return f"{self.utc.strftime(form)} UTC"
        return (
            f"{local.strftime(form)} {local.tzname()} ({self.zone}), {self.utc.strftime(form)} UTC"
        )


def zone_info(name: str) -> ZoneInfo:
    """The zone named ``name`` (an IANA name such as Asia/Tokyo), or one clear error."""
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InputError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin, Asia/Tokyo or UTC"
        ) from None


def local_zone_name() -> str:
    """The machine's own zone by its IANA name: ``$TZ`` when it is one, else the zone
    ``/etc/localtime`` links to, else ``/etc/timezone`` (Debian); UTC when none says."""
    candidates = [os.environ.get("TZ", "").removeprefix(":")]
    try:
        target = os.readlink("/etc/localtime")
        candidates.append(target.partition("zoneinfo/")[2])
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text("utf-8").strip())
    except (OSError, UnicodeDecodeError):
        pass
    known = available_timezones()
    for name in candidates:
        if name and name in known:
            return "UTC" if name in ("Etc/UTC", "Etc/Universal", "Universal", "Zulu") else name
    return "UTC"


MAX_YEARS_AHEAD = 10  # a send scheduled further ahead is a typo (and 9999 overflows)


def parse_local(text: str) -> datetime:
    """``--at``: a naive wall-clock time, or one clear error."""
    value = text.strip()
    if _OFFSET.search(value):
        raise InputError(
            f"--at {text!r}: give the local time without an offset (e.g. {EXAMPLE!r}) "
            "and the zone with --tz"
        )
    for form in FORMATS:
        try:
            return datetime.strptime(value, form)
        except ValueError:
            continue
    raise InputError(f"--at {text!r} is not a time: write it as YYYY-MM-DD HH:MM, e.g. {EXAMPLE!r}")


def due_time(text: str, zone: str | None, now: datetime) -> DueTime:
    """The instant ``text`` names in ``zone`` (default: the machine's); it must be
    after ``now`` and exist in that zone."""
    name = zone if zone is not None else local_zone_name()
    tz = zone_info(name)
    naive = parse_local(text)
    if naive.year > now.year + MAX_YEARS_AHEAD:
        raise InputError(f"--at {text!r}: give a time within the next {MAX_YEARS_AHEAD} years")
    if naive.year < now.year - 1:  # far in the past: no zone arithmetic (year 1 overflows)
        raise InputError(f"{naive:%Y-%m-%d %H:%M} is in the past; give a later time")
    aware = naive.replace(tzinfo=tz)
    utc = aware.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        gap = utc.astimezone(tz).utcoffset() - aware.utcoffset()  # type: ignore[operator]
        raise InputError(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {name}: the clocks go forward "
            f"{_hours(gap)} that night; choose another time"
        )
    if utc <= now:
        raise InputError(
            f"{naive:%Y-%m-%d %H:%M} {name} is in the past (it is now "
            f"{now.astimezone(tz):%Y-%m-%d %H:%M} there); give a later time"
        )
    return DueTime(utc, name)


def _hours(delta: timedelta) -> str:
    minutes = abs(int(delta.total_seconds())) // 60
    if minutes % 60 == 0:
        return f"by {minutes // 60} hour(s)"
    return f"by {minutes} minutes"
