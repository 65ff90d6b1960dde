"""Caching and readahead, counted at a proxy in front of a real Orthanc:
what is fetched, how often, and in how many requests.  No timings."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from tests.mounting import mounted, wait_for
from tests.servers.proxy import FaultProxy

pytestmark = pytest.mark.integration

ALICE_CT = "2021-03-04 TEST ALICE CT Chest"
AXIAL = "001 CT Axial 5mm"  # 12 instances


def config(url: str, cache: str = "", folders: str = '[[folders]]\nname = "all"\nquery = {}\n') -> str:
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}
timeout = 10
{folders}
[cache]
{cache}
"""


@pytest.fixture
def proxy(orthanc):
    with FaultProxy(orthanc.url) as p:
        yield p


def wado(proxy: FaultProxy) -> int:
    """Retrieve requests (WADO-RS paths end with the series or instance UID, not a search)."""
    with proxy.lock:
        return sum(
            1 for ln in proxy.log if "/series/" in ln and not ln.split("?")[0].endswith(("/series", "/instances"))
        )


def forget_preflight(proxy: FaultProxy) -> None:
    """Forget what the mount's pre-flight asked (a search and one instance read)."""
    with proxy.lock:
        proxy.log.clear()


def wait_idle(m) -> None:
    def idle() -> bool:
        p: dict[str, object] = m.stats()["prefetch"]
        return p["series_running"] == 0 and p["in_flight"] == 0 and p["series_pending"] == 0

    wait_for(idle, "the prefetch to finish", detail=lambda: str(m.stats()["prefetch"]))


def test_readahead_fetches_the_series_in_one_request_before_it_is_asked_for(proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        forget_preflight(proxy)
        series = m.path / "all" / ALICE_CT / AXIAL
        files = sorted(series.iterdir())
        assert len(files) == 12 and wado(proxy) == 0  # listing fetched nothing
        first = files[0].read_bytes()
        wait_idle(m)
        # the first file alone (its first byte does not wait for a series), and
        # one series request carrying the rest
        assert wado(proxy) == 2 and proxy.count("/instances/") == 1
        assert m.stats()["series_prefetches"] == 1
        rest = [f.read_bytes() for f in files[1:]]
        assert wado(proxy) == 2  # the rest was already here
        assert all(len(b) > 132 and b[128:132] == b"DICM" for b in [first, *rest])
        # a second read of the series, and ls -l of it, make no request at all
        before = len(proxy.log)
        for f in files:
            assert f.stat().st_size == len(f.read_bytes())
        assert len(proxy.log) == before


def test_readahead_off_fetches_one_instance_per_read(proxy, tmp_path):
    with mounted(config(proxy.url, 'readahead = "off"'), tmp_path) as m:
        forget_preflight(proxy)
        files = sorted((m.path / "all" / ALICE_CT / AXIAL).iterdir())
        for f in files[:3]:
            f.read_bytes()
        assert wado(proxy) == 3 and m.stats()["series_prefetches"] == 0


def test_concurrent_readers_of_one_file_share_one_fetch(proxy, tmp_path):
    proxy.delay = 0.5
    proxy.match = "/instances/"  # slow single-instance answers
    with mounted(config(proxy.url, 'readahead = "off"'), tmp_path) as m:
        forget_preflight(proxy)
        f = sorted((m.path / "all" / ALICE_CT / AXIAL).iterdir())[5]
        results: list[bytes] = []
        threads = [threading.Thread(target=lambda: results.append(f.read_bytes())) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 6 and len(set(results)) == 1
        assert wado(proxy) == 1


def test_readers_of_different_series_do_not_queue(proxy, tmp_path):
    """Eight readers of eight series: their requests overlap at the server even
    with two readahead slots (the others fetch their own file directly)."""
    with mounted(config(proxy.url, "readahead_series = 2"), tmp_path) as m:
        series = sorted(p for p in (m.path / "all").glob("*/*") if p.is_dir())
        assert len(series) >= 8
        firsts = [sorted(s.iterdir())[0] for s in series[:8]]
        proxy.max_active = 0
        proxy.delay = 1.5  # only the reads are slow: their requests must overlap
        threads = [threading.Thread(target=f.read_bytes) for f in firsts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert proxy.max_active >= 6, proxy.max_active


def test_disk_cache_survives_a_remount_and_rejects_corruption(proxy, tmp_path):
    cache_dir = tmp_path / "cache"
    cache = f'disk_dir = "{cache_dir}"\ndisk_mb = 100'
    with mounted(config(proxy.url, cache), tmp_path, name="first") as m:
        forget_preflight(proxy)
        files = sorted((m.path / "all" / ALICE_CT / AXIAL).iterdir())
        want = {f.name: f.read_bytes() for f in files}
        wait_idle(m)
    assert wado(proxy) == 2  # the first file alone, then its series
    cached = [
        p for p in cache_dir.glob("??/*") if p.is_file()
    ]  # objects only (not the listings, not the layout marker)
    assert len(cached) == 12
    # break one cached object: it must be detected, dropped and fetched again
    victim = cached[0]
    raw = bytearray(victim.read_bytes())
    raw[500] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with mounted(config(proxy.url, cache), tmp_path, name="second") as m:
        forget_preflight(proxy)
        files = sorted((m.path / "all" / ALICE_CT / AXIAL).iterdir())
        # sizes are known from the disk cache: ls -l costs no retrieve request
        sizes = {f.name: f.stat().st_size for f in files}
        assert wado(proxy) == 0
        got = {f.name: f.read_bytes() for f in files}
        assert got == want and sizes == {k: len(v) for k, v in want.items()}
        assert m.stats()["disk_cache"]["corrupt"] == 1
        assert wado(proxy) == 1  # only the corrupted one was fetched again


def test_memory_cache_smaller_than_a_series_still_reads_correctly(proxy, tmp_path, orthanc):
    # 16 MB cache, and a prefetch budget of 16 MB: every byte must still be exact
    with mounted(config(proxy.url, "memory_mb = 16"), tmp_path) as m:
        for f in sorted((m.path / "all").rglob("*.dcm")):
            uid = os.getxattr(f, "user.dicom.SOPInstanceUID").decode()
            assert f.read_bytes() == orthanc.instance_file(uid)


def test_stats_file_is_json_and_readonly(proxy, tmp_path):
    import json

    with mounted(config(proxy.url), tmp_path) as m:
        stats_path: Path = m.path / ".trolleyfs" / "stats.json"
        doc = json.loads(stats_path.read_text())
        assert {"requests", "bytes_fetched", "errors", "memory_cache", "prefetch"} <= set(doc)
        with pytest.raises(OSError) as refused:
            stats_path.write_text("{}")
        assert refused.value.errno in (errno.EROFS, errno.EACCES)
