"""Helpers for the cluster tests: the cohort series, the config every node
mounts, several nodes at once, and what to look at in them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.mounting import Mount, by_sop_uid, mounted, wait_for
from tests.servers.proxy import FaultProxy
from trolleyfs import cli
from trolleyfs.demo import sampledata

# one series of 40 CT instances of 256x256 (about 5 MB); with chunk_kb = 64 each object is 3 chunks
SPEC = sampledata.StudySpec(
    "CLUSTER^ONE", "C001", "20240301", "CT Cohort", (sampledata.SeriesSpec("CT", "Thin", 40, 256, 256),)
)
SERIES_UID = sampledata.uid("series", "C001", 0, 0)
STUDY_UID = sampledata.uid("study", "C001", 0)
SERIES_LEASE = f"trolleyfs:lease:{{s:pacs/{SERIES_UID}}}"  # the series lease, as named without a key_file
SHARED_WARNING = "WARNING trolleyfs.cluster: shared cache"  # the one warning of an outage


# a loaded test machine must not look like a Redis outage: the tests count requests assuming none
REDIS_TIMEOUT = "timeout = 10"


def node_config(pacs_url: str, shared: str, cache: str = "") -> str:
    """The config every node mounts: the PACS (through the proxy) and ``shared``
    lines of ``[cache.shared]``."""
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{pacs_url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{pacs_url}/dicom-web" }}
timeout = 10

[[folders]]
name = "cohort"
query = {{ PatientName = "CLUSTER*" }}

[cache]
memory_mb = 128
{cache}

[cache.shared]
{shared}
chunk_kb = 64
ttl = "1h"
{"" if "timeout" in shared else REDIS_TIMEOUT}
"""


@contextmanager
def nodes(n: int, config: str, tmp_path: Path) -> Iterator[list[Mount]]:
    """``n`` mounts of the same config, each its own trolleyfs process."""
    with ExitStack() as stack:
        yield [stack.enter_context(mounted(config, tmp_path, "--no-check", name=f"node{i + 1}")) for i in range(n)]


def series_dir(m: Mount) -> Path:
    (study,) = os.listdir(m.path / "cohort")
    (series,) = os.listdir(m.path / "cohort" / study)
    return m.path / "cohort" / study / series


def copied(d: Path) -> dict[str, bytes]:
    """The files of a copy, by SOP Instance UID."""
    return by_sop_uid([p.read_bytes() for p in sorted(d.iterdir())])


def shared_stats(m: Mount) -> dict[str, Any]:
    stats: dict[str, Any] = m.stats()["shared_cache"]
    return stats


def wait_idle(m: Mount) -> None:
    def idle() -> bool:
        p: dict[str, object] = m.stats()["prefetch"]
        return p["series_running"] == 0 and p["in_flight"] == 0 and p["series_pending"] == 0

    wait_for(idle, f"{m.path.name}'s fetches to finish", detail=lambda: str(m.stats()["prefetch"]))


def searches(proxy: FaultProxy, level: str) -> int:
    """QIDO-RS searches at ``level`` ("studies", "series", "instances") the proxy passed."""
    with proxy.lock:
        return sum(1 for line in proxy.log if line.split(" ", 1)[1].split("?")[0].endswith("/" + level))


def start_cp(src: Path, dest: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["cp", "-r", str(src), str(dest)], stderr=subprocess.PIPE)


def finish(procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait for copies started with :func:`start_cp`; each must succeed."""
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode(errors="replace")


def cp_all(dirs: list[Path], dest: Path) -> list[Path]:
    """``cp -r`` of each dir at the same moment (one process each); the copies."""
    dest.mkdir(exist_ok=True)
    outs = [dest / f"copy{i + 1}" for i in range(len(dirs))]
    finish([start_cp(d, o) for d, o in zip(dirs, outs, strict=True)])
    return outs


def stall_the_series_stream(proxy: FaultProxy) -> None:
    """The next series request's answer stops after about 600 kB (until
    ``proxy.reset()``): its node is then mid-series, holding the series lease."""
    proxy.match_re, proxy.stall_after, proxy.stall, proxy.fail_times = rf"/series/{SERIES_UID}$", 600_000, 300, 1


def objects_in(admin: Any) -> int:
    """Meta records of instances in Redis (readable key names only)."""
    return sum(1 for k in admin.scan_iter(match="trolleyfs:o:*", count=1000) if k.endswith(b"}"))


# the ACL of docs/cluster.md for a single server (a Redis Cluster needs CLUSTER_ACL)
ACL = (
    "trolleyfs on >right-password ~trolleyfs:* resetchannels -@all +get +set +mget +exists +pttl +del +pexpire +rpush +lrange "
    "+eval +evalsha +script|load +ping"
)
CLUSTER_ACL = ACL + " +cluster|slots +command"


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def check(config_path: Path, capsys) -> tuple[int, str]:
    """``trolleyfs check`` (in this process): its exit code and output."""
    capsys.readouterr()
    code = cli.main(["check", str(config_path)])
    out = capsys.readouterr()
    return code, out.out + out.err
