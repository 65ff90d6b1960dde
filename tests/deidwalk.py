"""A walk of a whole mount, as a user's tools would make it: every
directory, every file read whole and every xattr, by path; and the studies
a user looks up by their real numbers first (the only places where a real
number may appear are the names the user typed)."""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.deidcohort import Cohort
from tests.mounting import Mount


@dataclass
class Seen:
    """Everything a walk of a mount saw: names, xattrs and file contents, by path."""

    root: Path
    dirs: list[Path] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # path relative to the mount -> bytes
    xattrs: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def under(self, top: str) -> dict[str, bytes]:
        return {p: b for p, b in self.files.items() if p.startswith(top + "/")}

    def datasets(self, top: str) -> dict[str, Dataset]:
        return {p: dcmread(io.BytesIO(b)) for p, b in self.under(top).items() if p.endswith(".dcm")}


def _xattrs(path: Path) -> dict[str, bytes]:
    return {name: os.getxattr(path, name) for name in os.listxattr(path)}


def walk(mount: Path, typed: tuple[str, ...] = ()) -> Seen:
    """Every directory, file (read whole) and xattr under ``mount``, and under
    the ``typed`` paths (which no listing shows on a de-identified mount)."""
    seen = Seen(mount)
    for start in (mount, *(mount / t for t in typed)):
        _walk_below(seen, mount, start)
    return seen


def _walk_below(seen: Seen, mount: Path, start: Path) -> None:
    for top, dirs, files in os.walk(start):
        here = Path(top)
        seen.dirs.append(here)
        seen.xattrs[str(here.relative_to(mount))] = _xattrs(here)
        for name in files:
            path = here / name
            rel = str(path.relative_to(mount))
            data = path.read_bytes()
            if name.endswith(".gz"):  # a NIfTI: what it holds is searched, not its compressed bytes
                data += b"\n" + gzip.decompress(data)
            seen.files[rel] = data
            seen.xattrs[rel] = _xattrs(path)
        dirs.sort()


def real(cohort: Cohort, letter: str) -> tuple[str, str]:
    """The real accession number and Patient ID of a study."""
    study = cohort.study(letter)
    return study.accession, study.patient_id


@dataclass
class Opened:
    mount: Mount
    seen: Seen
    typed: set[str]  # path components the test typed (real numbers): the only places they may appear


def open_and_walk(mount: Mount, cohort: Cohort) -> Opened:
    """Look up the real accession number of study A and the real Patient ID of
    study B (as a user types them), then walk the whole mount."""
    acc, _ = real(cohort, "A")
    _, pid = real(cohort, "B")
    assert len(os.listdir(mount.path / "by-accession" / acc)) == 1
    assert len(os.listdir(mount.path / "by-patient" / pid)) == 1
    return Opened(mount, walk(mount.path, (f"by-accession/{acc}", f"by-patient/{pid}")), {acc, pid})
