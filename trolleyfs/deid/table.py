"""The standard's table (``data/annex_e.json``, PS3.15 Table E.1-1) and the
one action it gives each attribute under a set of options.

The table's actions are D (dummy), Z (zero length or dummy), X (remove),
K (keep), C (clean), U (replace UID) and choices among them that depend on
the attribute's Type in its IOD (X/Z, X/D, X/Z/D, Z/D, X/Z/U*).  trolleyfs does
not look up Types: it takes the choice that is valid whatever the Type, D
over Z over X (D, a dummy value, keeps even a Type 1 attribute present; Z,
zero length, keeps a Type 2 one).  X/Z/U* (Referenced and Source Image
Sequence) keeps the sequence and walks its items, whose UIDs are replaced by
their own rows (U).

Options: an attribute's action is the basic profile's unless a chosen option
has a cell for it; K wins over C when two chosen options disagree (Retain
Device Identity and Retain UIDs both say K for Device UID), except that with
the Retain Longitudinal Temporal Information with Modified Dates option a
date or time is always shifted (C), even where another option (Retain Device
Identity for calibration dates) would keep it: a true date beside shifted
ones would tell the shift.  That option's C on what is not a date or time
(Timezone Offset From UTC, Certified and Frame Origin Timestamps, which
trolleyfs cannot shift) leaves the basic profile's action in force.

The table's tag patterns are read as rules of their own: curves
(50xx,xxxx), overlay data and comments (60xx,3000) and (60xx,4000), and private
attributes (odd groups)."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from pydicom.datadict import dictionary_has_tag, dictionary_VR

from .options import Option

DATA_FILE = "annex_e.json"
COLUMNS = ("tag", "name", "basicProfile", *(o.column for o in Option))
_TAG = re.compile(r"^\(([0-9A-F]{4}),([0-9A-F]{4})\)$")
_PATTERNS = {
    "(50XX,XXXX)": "curves",
    "(60XX,3000)": "overlay_data",
    "(60XX,4000)": "overlay_comments",
    "(GGGG,EEEE) WHERE GGGG IS ODD": "private",
}
_DATE_VRS = frozenset({"DA", "DT", "TM"})


class Act(enum.Enum):
    """What happens to one attribute."""

    KEEP = "K"  # kept; a sequence's items are walked
    REMOVE = "X"
    EMPTY = "Z"  # zero length (a sequence: as D)
    DUMMY = "D"  # a dummy value consistent with the VR (a sequence: items walked, texts and codes dummied)
    UID = "U"  # a keyed new UID
    CLEAN = "C"  # dates shifted; texts cleaned; a sequence's items walked, texts cleaned


@dataclass(frozen=True)
class Row:
    """One row of the table: the tag as written, the name, the basic
    profile's action and the option columns that have a cell."""

    tag: str
    name: str
    basic: str
    options: dict[Option, str] = field(default_factory=dict)


def basic_action(cell: str) -> Act:
    """The action taken for a basic-profile cell (see the module docstring)."""
    if cell == "X/Z/U*":
        return Act.KEEP
    choices = cell.split("/")
    for letter in ("D", "Z", "X", "U", "K", "C"):
        if letter in choices:
            return Act(letter)
    raise ValueError(f"unknown action {cell!r}")


def resolve(row: Row, options: frozenset[Option], vr: str | None = None) -> Act:
    """The action for ``row`` with ``options`` chosen; ``vr`` is the
    attribute's VR where known (dates and times follow the temporal option)."""
    shifted = Option.RETAIN_MODIFIED_DATES in options and row.options.get(Option.RETAIN_MODIFIED_DATES) == "C"
    if shifted and (vr is None or vr in _DATE_VRS):
        return Act.CLEAN
    said = {
        cell
        for option, cell in row.options.items()
        if option in options and not (shifted and option is Option.RETAIN_MODIFIED_DATES)
    }
    if "K" in said:
        return Act.KEEP
    if "C" in said:
        return Act.CLEAN
    return basic_action(row.basic)


@dataclass(frozen=True)
class Profile:
    """The table resolved for one set of options: the action of every exact
    tag, and of the patterns.  ``action(tag)`` is None for an attribute that
    the table does not list (kept)."""

    options: frozenset[Option]
    actions: MappingProxyType[int, Act]
    curves: Act
    overlay_data: Act
    overlay_comments: Act
    private: Act

    def action(self, tag: int) -> Act | None:
        return self.actions.get(tag)


def _row(cells: list[Any]) -> Row:
    if len(cells) != len(COLUMNS) or not all(isinstance(c, str | None) for c in cells):
        raise ValueError(f"{DATA_FILE}: malformed row {cells!r}")
    tag, name, basic, *rest = cells
    if not tag or not name or not basic:
        raise ValueError(f"{DATA_FILE}: row without tag, name or action: {cells!r}")
    options = {o: c for o, c in zip(Option, rest, strict=True) if c}
    for cell in options.values():
        if cell not in ("K", "C"):
            raise ValueError(f"{DATA_FILE}: {tag}: option cell {cell!r} is neither K nor C")
    basic_action(basic)  # raises on an unknown action
    return Row(tag, name, basic, options)


@cache
def rows() -> tuple[Row, ...]:
    """Every row of the shipped table, checked."""
    text = resources.files(__package__).joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    if tuple(data.get("columns", ())) != COLUMNS:
        raise ValueError(f"{DATA_FILE}: columns are {data.get('columns')!r}, expected {COLUMNS!r}")
    return tuple(_row(r) for r in data["attributes"])


def tag_of(row: Row) -> int | None:
    """The tag of an exact row as an integer; None for a pattern."""
    m = _TAG.match(row.tag)
    return int(m.group(1) + m.group(2), 16) if m else None


def table_vr(tag: int) -> str | None:
    """The VR of ``tag`` in pydicom's dictionary (the first of several)."""
    if not dictionary_has_tag(tag):
        return None
    return dictionary_VR(tag).split(" or ")[0]


@cache
def profile(options: frozenset[Option] = frozenset()) -> Profile:
    """The table resolved for ``options``."""
    actions: dict[int, Act] = {}
    patterns: dict[str, Act] = {}
    for row in rows():
        tag = tag_of(row)
        if tag is not None:
            actions[tag] = resolve(row, options, table_vr(tag))
        elif row.tag in _PATTERNS:
            patterns[_PATTERNS[row.tag]] = resolve(row, options)
        else:
            raise ValueError(f"{DATA_FILE}: unknown tag pattern {row.tag!r}")
    missing = set(_PATTERNS.values()) - set(patterns)
    if missing:
        raise ValueError(f"{DATA_FILE}: no row for {', '.join(sorted(missing))}")
    return Profile(options, MappingProxyType(actions), **patterns)
