"""Subscriber attributes: the columns of an imported file that the importer does not
read itself (email, name), kept per subscriber as header -> cell text and stored as JSON.

Pure: no store. How many a subscriber keeps, and how long a name or value may be, is
bounded here; the reader (:mod:`digest_mailer.csvio.reading`) applies the bounds.
"""

import json

MAX_ATTRIBUTES = 50  # filled attributes per subscriber
MAX_ATTRIBUTE_NAME = 100
MAX_ATTRIBUTE_VALUE = 1000


def dump_attributes(attributes: dict[str, str]) -> str:
    return json.dumps(attributes, ensure_ascii=False, separators=(",", ":"))


def load_attributes(text: str | None) -> dict[str, str]:
    """The attributes stored as JSON text; anything but an object of strings reads as {}."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def merge_attributes(old: dict[str, str], new: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """``old`` updated with ``new`` (new values win), at most :data:`MAX_ATTRIBUTES`;
    returns (merged, names of new attributes left out for the limit)."""
    merged = dict(old)
    left_out = []
    for name, value in new.items():
        if name in merged or len(merged) < MAX_ATTRIBUTES:
            merged[name] = value
        else:
            left_out.append(name)
    return merged, left_out
