"""Tables that fit the terminal: columns are dropped, then shortened, before any wraps.

Rich's tables squeeze every column to fit, which cuts ids and counts to "…". Here each
column says what may happen to it: a ``fixed`` column is never cut, an ``optional`` one
is left out (last first) when the line would be too wide, and one ``flex`` column takes
what width is left and is shortened with "…".
"""

from collections.abc import Sequence
from dataclasses import dataclass

GAP = "  "
MIN_FLEX = 12


@dataclass
class Column:
    header: str
    values: list[str]
    kind: str = "fixed"  # fixed | optional | flex
    align: str = "left"  # left | right

    @property
    def natural(self) -> int:
        return max([len(self.header), *(len(v) for v in self.values)])


def _cell(text: str, width: int, align: str) -> str:
    if len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text.rjust(width) if align == "right" else text.ljust(width)


def fit(columns: Sequence[Column], width: int) -> list[str]:
    """The header and one line per row, each at most ``width`` characters when the fixed
    columns allow it (they are never cut: a line may then be longer)."""
    shown = list(columns)
    widths = {id(c): c.natural for c in shown}

    def total() -> int:
        return sum(widths[id(c)] for c in shown) + len(GAP) * (len(shown) - 1)

    for column in reversed(list(columns)):
        if total() <= width:
            break
        if column.kind == "optional":
            shown.remove(column)
    flex = [c for c in shown if c.kind == "flex"]
    if flex and total() > width:
        others = total() - sum(widths[id(c)] for c in flex)
        room = max(MIN_FLEX, (width - others) // len(flex))
        for c in flex:
            widths[id(c)] = min(widths[id(c)], room)
    rows = len(shown[0].values) if shown else 0
    lines = [GAP.join(_cell(c.header, widths[id(c)], c.align) for c in shown).rstrip()]
    for i in range(rows):
        lines.append(GAP.join(_cell(c.values[i], widths[id(c)], c.align) for c in shown).rstrip())
    return lines


def card(pairs: Sequence[tuple[str, str]], width: int) -> list[str]:
    """A vertical card: one ``label  value`` line per pair; a long value wraps under
    itself, a value of several lines keeps them."""
    label_width = max(len(label) for label, _ in pairs)
    room = max(width - label_width - len(GAP), 20)
    lines = []
    for label, value in pairs:
        first = True
        for part in value.splitlines() or [""]:
            for chunk in _wrap(part, room):
                lines.append(f"{(label if first else '').ljust(label_width)}{GAP}{chunk}".rstrip())
                first = False
    return lines


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(" "), [], ""
    for word in words:
        while len(word) > width:  # a long token (an id, a URL) is split, not lost
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:width])
            word = word[width:]
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines
