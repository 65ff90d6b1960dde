"""What dcm2niix makes of a series: ``<name>.nii.gz`` and its BIDS sidecar
``<name>.json``, plus ``.bval``/``.bvec`` and the extra volumes (one per
echo ``<name>_e2``, phase ``<name>_ph``, ...) where dcm2niix makes them.

:class:`Dcm2niix` writes the series' Part-10 objects (as the read path
delivers them: converted, de-identified) into a private temporary directory,
runs dcm2niix there through trio's process API with a deadline, at most
``concurrency`` conversions at once, reads what it wrote and removes the
directory (also on failure or cancellation).  The output is deterministic:
the same objects give the same bytes on every run, whatever their order.

- dcm2niix is run as ``dcm2niix -g i -b y -ba y -c "" -z n -f series -o out in``:
  ``-g i`` ignores a user's defaults file (~/.dcm2nii.ini), ``-ba y`` strips
  dates and identifying values from the sidecar, ``-c ""`` empties the NIfTI
  header's ``aux_file``, where dcm2niix otherwise copies Image Comments
  (0020,4000); ``-f series`` a fixed file name (the default template holds the
  folder's name, here a random one); ``-z n`` uncompressed output, gzipped
  here with a zero mtime and no file name in the gzip header (dcm2niix's own
  gzip would be another program's choice).  Everything else is dcm2niix's
  default, so the volumes are what a user running dcm2niix gets.
- The files are renamed from ``series...`` to ``<name>...`` (``name`` given by
  the caller, a stable name of the series) and returned sorted by name.
- A series dcm2niix makes nothing of (an SR, a presentation state, a series
  it rejects; with ``skip_2d`` also single 2D images, localizers and derived
  images: ``-i y``) gives no files and dcm2niix's message in one line, for the
  caller to log; so do a timeout and a crash.  Only cancellation escapes.

The binary: :func:`find_dcm2niix` prefers the ``dcm2niix`` wheel's (a
dependency, pinned in pyproject.toml) over one on the PATH."""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from ..part10 import part10_sop_instance_uid
from .counters import DeriveCounters
from .tool import ToolRun, private_dir, run_tool

STEM = "series"  # what dcm2niix names its outputs here (renamed afterwards)
MAX_MESSAGE = 300  # characters of dcm2niix's message kept
_NOISE = re.compile(r"^(Chris Rorden's dcm2niiX|Found \d+ DICOM|Conversion required|Defaults ignored|Compression will)")
_VERSION = re.compile(r"version (v[0-9][0-9A-Za-z.\-_]*)")


@dataclass(frozen=True)
class NiftiResult:
    """What a conversion gave: ``files`` as (name, bytes), sorted by name
    (empty when dcm2niix made nothing); ``message``: dcm2niix's message in one
    line when it made nothing or exited with an error (None when it succeeded
    quietly); ``final``: False when another try may give another answer (the
    run timed out, dcm2niix could not be started, the temporary directory
    could not be written), so the caller should not keep the result."""

    files: tuple[tuple[str, bytes], ...]
    message: str | None = None
    final: bool = True

    @property
    def size(self) -> int:
        """The bytes of all files together."""
        return sum(len(data) for _, data in self.files)


def find_dcm2niix() -> str | None:
    """The dcm2niix binary: the ``dcm2niix`` wheel's, else the first one on the PATH."""
    spec = importlib.util.find_spec("dcm2niix")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(folder, "dcm2niix")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("dcm2niix")


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` can be a file name's stem."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a usable output name: {name!r}")


def one_line(run: ToolRun, made_files: bool) -> str | None:
    """dcm2niix's message for the log: its first ``Error`` line, else its last
    line that is not boilerplate (a warning only when nothing else was said);
    None when it exited 0 and made files."""
    if run.returncode == 0 and made_files:
        return None
    lines = [line.strip() for line in run.output.splitlines()]
    lines = [line for line in lines if line and not _NOISE.match(line)]
    errors = [line for line in lines if line.lower().startswith("error")]
    others = [line for line in lines if not line.lower().startswith("warning")]
    text = errors[0] if errors else others[-1] if others else lines[-1] if lines else ""
    if run.returncode < 0:
        status = f"killed by signal {-run.returncode}"
    elif run.returncode:
        status = f"exit status {run.returncode}"
    else:
        status = "made no volume"
    text = f"dcm2niix: {text} ({status})" if text else f"dcm2niix: {status}"
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _order(objects: Sequence[bytes]) -> list[bytes]:
    """The objects sorted by SOP Instance UID (so that the order they were
    delivered in changes nothing); objects without one keep their place after."""
    keyed: list[tuple[str, int, bytes]] = []
    for i, data in enumerate(objects):
        try:
            keyed.append((part10_sop_instance_uid(data), i, data))
        except ValueError:
            keyed.append(("\uffff", i, data))
    return [data for _, _, data in sorted(keyed, key=lambda k: (k[0], k[1]))]


def write_inputs(work: Path, objects: Sequence[bytes]) -> tuple[Path, Path]:
    """``work/in/000000.dcm``... (one file per object) and an empty ``work/out``."""
    src, dst = work / "in", work / "out"
    src.mkdir(mode=0o700)
    dst.mkdir(mode=0o700)
    for i, data in enumerate(_order(objects)):
        (src / f"{i:06}.dcm").write_bytes(data)
    return src, dst


def collect(out: Path, name: str, level: int) -> list[tuple[str, bytes]]:
    """The files dcm2niix wrote into ``out``, renamed ``series*`` -> ``name*``,
    each ``.nii`` gzipped (mtime 0, no file name in the header)."""
    files: list[tuple[str, bytes]] = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix().replace("/", "_")
        new = name + rel[len(STEM) :] if rel.startswith(STEM) else f"{name}_{rel}"
        data = path.read_bytes()
        if new.endswith(".nii"):
            new, data = new + ".gz", gzip.compress(data, compresslevel=level, mtime=0)
        files.append((new, data))
    return sorted(files)


class Dcm2niix:
    """Converts series with dcm2niix (see the module's docstring).

    ``binary``: the dcm2niix to run; ``timeout``: seconds per run (then the
    process is killed and nothing is made); ``concurrency``: runs at once;
    ``gzip_level``: 1-9 (dcm2niix's default is 6); ``skip_2d``: pass ``-i y``
    (no volume of single 2D images, localizers or derived series: ADC maps,
    reformats and MIPs marked DERIVED are skipped too); ``tmp_dir``: where the
    private directories go (default: the system's temporary directory)."""

    def __init__(
        self,
        binary: str,
        *,
        timeout: float = 300.0,
        concurrency: int = 1,
        gzip_level: int = 6,
        skip_2d: bool = False,
        tmp_dir: str | None = None,
        counters: DeriveCounters | None = None,
    ) -> None:
        if not 1 <= gzip_level <= 9:
            raise ValueError(f"gzip_level must be 1 to 9, not {gzip_level}")
        self.binary = binary
        self.timeout = timeout
        self.gzip_level = gzip_level
        self.skip_2d = skip_2d
        self.tmp_dir = tmp_dir
        self.counters = counters if counters is not None else DeriveCounters()
        self._limiter = trio.CapacityLimiter(max(1, concurrency))
        self._version: str | None = None

    def argv(self, src: Path, dst: Path) -> list[str]:
        """The command line for one conversion of ``src`` into ``dst``."""
        return [
            self.binary,
            *("-g", "i", "-b", "y", "-ba", "y", "-c", "", "-z", "n", "-f", STEM),
            *("-i", "y" if self.skip_2d else "n"),
            *("-o", str(dst), str(src)),
        ]

    def _env(self, work: Path) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(work), "TMPDIR": str(work), "LC_ALL": "C"}

    async def _run(self, argv: list[str], work: Path) -> ToolRun | None:
        """``argv`` run in ``work``; None when it did not finish within the timeout (then it was killed)."""
        with trio.move_on_after(self.timeout):
            return await run_tool(argv, work, self._env(work))
        return None

    async def version(self) -> str:
        """dcm2niix's version (``v1.0.20260724``), asked once; raises OSError
        when it cannot be run or does not say."""
        if self._version is None:
            async with private_dir(self.tmp_dir) as work:
                run = await self._run([self.binary, "--version"], work)
            found = _VERSION.search(run.output) if run else None
            if not found:
                said = run.output.strip()[:200] if run else "nothing within the timeout"
                raise OSError(f"{self.binary} --version says no version: {said!r}")
            self._version = found.group(1)
        return self._version

    async def form(self) -> str:
        """A name for what this converter makes, for the key under which the
        caller caches it: it changes when anything that changes the bytes does
        (dcm2niix's version, the options)."""
        return f"nifti:dcm2niix-{await self.version()}:i{'y' if self.skip_2d else 'n'}:z{self.gzip_level}"

    async def convert(self, objects: Sequence[bytes], name: str) -> NiftiResult:
        """What dcm2niix makes of ``objects`` (one series), named ``name*``."""
        check_name(name)
        if not objects:
            return NiftiResult((), "dcm2niix: the series has no objects")
        async with self._limiter:
            started = trio.current_time()
            try:
                result = await self._convert(objects, name)
            except OSError as exc:
                result = NiftiResult((), f"dcm2niix: cannot run {self.binary}: {exc}", final=False)
            self.counters.record(result.size if result.files else None, trio.current_time() - started)
        return result

    async def _convert(self, objects: Sequence[bytes], name: str) -> NiftiResult:
        async with private_dir(self.tmp_dir) as work:
            src, dst = await trio.to_thread.run_sync(write_inputs, work, objects)
            run = await self._run(self.argv(src, dst), work)
            if run is None:
                return NiftiResult((), f"dcm2niix: did not finish within {self.timeout:g} s (killed)", final=False)
            if run.returncode < 0:  # a crash, or killed from outside: keep nothing
                return NiftiResult((), one_line(run, False), final=False)
            files = await trio.to_thread.run_sync(collect, dst, name, self.gzip_level)
        message = one_line(run, bool(files))
        if not files and run.returncode == 0 and self.skip_2d:
            message = "dcm2niix: made no volume (2D, localizer and derived images are skipped: -i y)"
        return NiftiResult(tuple(files), message)
