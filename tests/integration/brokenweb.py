"""What the broken-server and integrity tests share: a config over the
DICOMweb test server (and others), and the checks of what a mount shows.
The fixtures (``index``, ``web``, ``uid_of``) are in this package's conftest."""

from __future__ import annotations

from pathlib import Path

from tests.mounting import Mount
from tests.servers.dicomweb import DicomWebServer

ALL = '\n[[folders]]\nname = "all"\nquery = {}\n'


def config(search: str, retrieve: str, folders: str = ALL, extra: str = "", cache: str = "") -> str:
    return f"""
[servers.pacs]
search   = {search}
retrieve = {retrieve}
timeout = 5
retries = 1
{extra}
{folders}
[cache]
{cache}
"""


def qido(server: DicomWebServer, extra: str = "") -> str:
    return f'{{ protocol = "qido-rs", url = "{server.url}"{extra} }}'


def wado(server: DicomWebServer) -> str:
    return f'{{ protocol = "wado-rs", url = "{server.url}" }}'


def series_dirs(m: Mount, folder: str = "all") -> list[Path]:
    return sorted(p for p in (m.path / folder).glob("*/*") if p.is_dir())


def files_of(m: Mount, folder: str = "all") -> list[Path]:
    return sorted((m.path / folder).rglob("*.dcm"))


def read_errno(path: Path) -> int | None:
    try:
        path.read_bytes()
    except OSError as exc:
        return exc.errno
    return None


def no_traceback(m: Mount) -> None:
    assert "Traceback" not in m.log_text(), m.log_text()[-3000:]
