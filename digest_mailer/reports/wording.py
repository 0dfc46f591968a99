"""How the reports write their figures, the same in the terminal and in the HTML page
(pure)."""


def duration_text(seconds: float | None) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 5 min``, ``3 d 4 h``; ``-`` for None."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def share(part: int, whole: int) -> str:
    """``12.5%`` of ``whole``; ``-`` when there is no whole."""
    return f"{100 * part / whole:.1f}%" if whole else "-"


def day(iso: str | None) -> str:
    """``2026-11-19 08:00`` from an ISO time (UTC), ``-`` for None."""
    return iso[:16].replace("T", " ") if iso else "-"
