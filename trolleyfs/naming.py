"""Directory and file names: templates, sanitizing and collision suffixes.

A template is ``str.format`` syntax over DICOM keywords, e.g.
``{StudyDate} {PatientName} {StudyDescription}``.  A missing attribute renders
as nothing; a numeric format spec (``{SeriesNumber:03}``) pads numbers and is
ignored for values that are not numbers.  Dates render as ``YYYY-MM-DD`` and
person names as ``DOE JOHN``.

Names are made safe (no ``/``, NUL or control characters, no leading ``.``, at
most 255 bytes) and unique within a directory: entries whose names collide all
get `` ~xxxxxxxx``, a hash of their UID, so a name depends only on the object
and the set it collides with, never on the order the server listed them in.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_NAME_BYTES = 255
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")
_SPACES = re.compile(r"\s+")


class _Formatter(string.Formatter):
    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, int):
            raise ValueError("positional fields like {} or {0} are not allowed: name a DICOM keyword")
        return kwargs.get(key, "")

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec:
            try:
                return format(int(str(value).strip()), format_spec)
            except ValueError:
                try:
                    return format(float(str(value).strip()), format_spec)
                except ValueError:
                    return str(value)
        return str(value)


_FMT = _Formatter()


# A format spec a name may use: fill and alignment, sign, zero padding, a width
# and precision of at most three digits, a grouping and a number type.  Nothing
# that can fail on a value a server sends (``!x``, ``:c``) or render a name of
# megabytes (``:99999999``).
_SPEC = re.compile(r"(.?[<>=^])?[-+ ]?z?#?0?\d{0,3}[,_]?(\.\d{1,3})?[bdeEfFgGnoxX%]?")


def check_template(template: str) -> None:
    """Raise ValueError if ``template`` is not usable."""
    from pydicom.datadict import tag_for_keyword

    try:
        parts = [(f, spec, conv) for _, f, spec, conv in _FMT.parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"bad template {template!r}: {exc}") from None
    if not parts:
        raise ValueError(f"template {template!r} names no DICOM keyword")
    for f, spec, conv in parts:
        if not f or tag_for_keyword(f) is None:
            raise ValueError(f"template {template!r}: {f!r} is not a DICOM keyword")
        if conv is not None:
            raise ValueError(f"template {template!r}: {{{f}!{conv}}}: conversions are not allowed")
        if spec and not _SPEC.fullmatch(spec):
            raise ValueError(f"template {template!r}: {{{f}:{spec}}} is not a format for a name (e.g. :03)")


def display_value(keyword: str, value: str) -> str:
    """How an attribute value reads in a name."""
    value = value.strip()
    if keyword.endswith("Date"):
        m = _DATE.match(value)
        if m and 1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= 31:
            return "-".join(m.groups())
    if keyword.endswith("Name") and "^" in value:
        # PN: components separated by ^, groups by =; show the first group
        value = " ".join(p for p in value.split("=")[0].split("^") if p)
    return value.replace("\\", ",")


def render(template: str, attrs: Mapping[str, str]) -> str:
    values = {k: display_value(k, v) for k, v in attrs.items()}
    return _SPACES.sub(" ", _FMT.vformat(template, (), values)).strip()


def _truncate(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore").rstrip()


def sanitize(text: str, suffix: str = "", fallback: str = "unnamed") -> str:
    """A safe single path component: ``text`` + ``suffix``, at most 255 bytes."""
    text = unicodedata.normalize("NFC", text)
    text = _UNSAFE.sub("_", text)
    # surrogates (undecodable bytes), private-use and unassigned code points
    text = "".join("_" if unicodedata.category(ch) in ("Cs", "Co", "Cn") else ch for ch in text)
    text = _SPACES.sub(" ", text).strip()
    text = text.lstrip(".") if text.startswith(".") else text
    if not text:
        text = fallback
    return _truncate(text, MAX_NAME_BYTES - len(suffix.encode("utf-8"))) + suffix


def _tag(uid: str) -> str:
    return hashlib.sha1(uid.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def unique_names(items: Sequence[tuple[str, str]], suffix: str = "") -> list[str]:
    """Names for ``(base name, uid)`` pairs, unique within the list.

    ``base`` is already rendered; it is sanitized here, and colliding names get
    `` ~<hash of uid>`` before ``suffix`` (e.g. ``.dcm``)."""
    bases = [sanitize(base, suffix, fallback=sanitize(uid, fallback="unnamed")) for base, uid in items]
    counts: dict[str, int] = {}
    for b in bases:
        counts[b.casefold()] = counts.get(b.casefold(), 0) + 1
    out: list[str] = []
    taken: set[str] = set()
    for (_, uid), b in zip(items, bases, strict=True):
        name = b
        if counts[b.casefold()] > 1:
            stem = b[: len(b) - len(suffix)] if suffix else b
            tag = f" ~{_tag(uid)}"
            name = sanitize(stem, tag + suffix)
        n = 2
        while name.casefold() in taken:  # two identical UIDs, or a hash clash
            name = sanitize(b[: len(b) - len(suffix)] if suffix else b, f" ~{_tag(uid)}-{n}{suffix}")
            n += 1
        taken.add(name.casefold())
        out.append(name)
    return out


def names_for(template: str, objs: Iterable[tuple[Mapping[str, str], str]], suffix: str = "") -> list[str]:
    """Render ``template`` for ``(attrs, uid)`` pairs and make the names unique."""
    return unique_names([(render(template, attrs), uid) for attrs, uid in objs], suffix)
