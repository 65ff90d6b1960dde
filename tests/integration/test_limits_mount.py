"""The servers' limits through real mounts of a real Orthanc, counted at a TCP
forwarder in front of it (bytes as the forwarder reads them from Orthanc,
requests as it passes them on), bounds from above only: what passes stays
within ``rate x W + burst`` in every window W (plus, for bytes, what socket
buffers hold: :mod:`tests.integration.limits_env`).  No test asserts how
long anything took."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import run

import pytest

from tests.integration.cluster.nodes import nodes
from tests.integration.limits_env import (
    FORWARDER_SNDBUF,
    MB,
    SERIES_A,
    SERIES_B,
    SMALL,
    assert_bytes_under,
    assert_requests_under,
    big_files,
    config,
    digest,
    start_big_pacs,
    study_dir,
)
from tests.limits_check import worst_window
from tests.mounting import TROLLEYFS, dataset_bytes, mounted, wait_for
from tests.servers.redisserver import RedisServer
from tests.servers.tcpcount import CountingForwarder, forwarding
from trolleyfs.demo.orthanc import Orthanc, free_port
from trolleyfs.part10 import part10_sop_instance_uid

pytestmark = pytest.mark.integration

LIMITS_COMMANDS = " +zadd +zremrangebyscore +zcard +time"  # what the limits' script needs beyond the tier's


@pytest.fixture(scope="module")
def move_port() -> int:
    """Where the big Orthanc sends its C-MOVEs: a forwarder in front of the mount's receiver."""
    return free_port()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, move_port: int) -> Iterator[Orthanc]:
    """An Orthanc holding the big study only."""
    yield from start_big_pacs(tmp_path_factory.mktemp("orthanc-limits"), move_to=move_port)


@pytest.fixture(scope="module")
def digests() -> dict[str, str]:
    return {part10_sop_instance_uid(b): digest(b) for b in big_files()}


def read_uids(directory: Path, dataset_only: bool = False) -> dict[str, str]:
    """SHA-256 of each file under ``directory`` (a copy), by SOP Instance UID
    (of its dataset only, after the file meta group, with ``dataset_only``)."""
    out = {}
    for f in sorted(directory.rglob("*.dcm")):
        data = f.read_bytes()
        out[part10_sop_instance_uid(data)] = digest(dataset_bytes(data) if dataset_only else data)
    return out


def test_cp_r_of_a_series_stays_under_mb_per_s_and_is_byte_identical(big, digests, tmp_path):
    rate = 2 * MB
    with forwarding("127.0.0.1", big.http_port, http=True, sndbuf=FORWARDER_SNDBUF) as fwd:
        cfg = config(f"http://127.0.0.1:{fwd.port}", "mb_per_s = 2, burst_s = 1")
        with mounted(cfg, tmp_path) as m:
            series = study_dir(m.path) / SERIES_A
            dest = tmp_path / "copy"
            subprocess.run(["cp", "-r", str(series), str(dest)], check=True, timeout=300)
            copied = read_uids(dest)
            stats = m.stats()["limits"]["pacs"]
        timeline, connections = list(fwd.timeline), fwd.connections
    assert len(copied) == 16 and all(digests[uid] == d for uid, d in copied.items())
    assert sum(n for _, n in timeline) >= 16 * 512 * 512 * 2  # the series came through the forwarder
    excess = assert_bytes_under(timeline, rate, rate, connections)
    print(f"worst window: {excess / MB:+.3f} MB over rate x W + burst, {connections} connections")
    assert stats["limits"]["mb_per_s"] == 2 and stats["bytes"] >= 16 * 512 * 512 * 2
    assert stats["waited_s"]["rate"] > 0 and stats["bytes_bucket"]["kind"] == "local"


def test_requests_per_s_holds_for_single_file_reads(big, tmp_path):
    rate = 4.0
    with forwarding("127.0.0.1", big.http_port, http=True) as fwd:
        cfg = config(
            f"http://127.0.0.1:{fwd.port}", "requests_per_s = 4, burst_s = 1", cache='[cache]\nreadahead = "off"'
        )
        with mounted(cfg, tmp_path) as m:
            probe = len(fwd.requests)  # the pre-flight's search, before the mount (not counted by it)
            files = sorted((study_dir(m.path) / SMALL).iterdir())
            for f in files:
                with open(f, "rb") as fh:
                    fh.read()
            stats = m.stats()["limits"]["pacs"]
        requests = list(fwd.requests)[probe:]
    retrieves = [t for t, line in requests if "/instances/" in line and not line.split("?")[0].endswith("/instances")]
    assert len(retrieves) == len(files) == 24  # one request per file: no readahead
    excess = assert_requests_under([t for t, _ in requests], rate, rate)
    print(f"worst window: {excess:+.1f} requests over rate x W + burst ({len(requests)} requests)")
    assert stats["requests"] == len(requests) and stats["waited_s"]["rate"] > 0


def test_two_nodes_sharing_one_redis_stay_under_one_cap_together(big, digests, tmp_path):
    rate = 2 * MB
    with RedisServer() as redis, forwarding("127.0.0.1", big.http_port, http=True, sndbuf=FORWARDER_SNDBUF) as fwd:
        shared = f'[cache.shared]\nurl = "{redis.url}"\ntimeout = 10'
        cfg = config(f"http://127.0.0.1:{fwd.port}", "mb_per_s = 2, burst_s = 1", cache=f"[cache]\n{shared}")
        with nodes(2, cfg, tmp_path) as (one, two):
            copies = [tmp_path / "copy1", tmp_path / "copy2"]
            sources = [study_dir(one.path) / SERIES_A, study_dir(two.path) / SERIES_B]
            cps = [subprocess.Popen(["cp", "-r", str(s), str(c)]) for s, c in zip(sources, copies, strict=True)]
            try:
                assert [p.wait(300) for p in cps] == [0, 0]
            finally:
                for p in cps:
                    p.kill()
            buckets = [m.stats()["limits"]["pacs"]["bytes_bucket"] for m in (one, two)]
        timeline, connections = list(fwd.timeline), fwd.connections
    copied = {**read_uids(copies[0]), **read_uids(copies[1])}
    assert len(copied) == 32 and all(digests[uid] == d for uid, d in copied.items())
    assert all(b["kind"] == "cluster" and b["state"] == "shared through Redis" and b["nodes"] == 2 for b in buckets)
    excess = assert_bytes_under(timeline, rate, rate, connections)
    print(f"worst window: {excess / MB:+.3f} MB over rate x W + burst, {connections} connections")


def shut_hours(ahead_minutes: int = 120) -> str:
    """Background hours that are shut now: an hour starting ``ahead_minutes`` from now."""
    start = dt.datetime.now() + dt.timedelta(minutes=ahead_minutes)
    end = start + dt.timedelta(hours=1)
    return f"{start:%H:%M}-{end:%H:%M}"


def retrieves(fwd: CountingForwarder, since: int = 0) -> list[str]:
    """The WADO-RS retrieves passed on (a series' or an instance's, not a search),
    from the ``since``-th request on (after the pre-flight's, which reads one
    instance before the mount is made: :func:`mounted_at`)."""
    lines = [line.split(" ")[1].split("?")[0] for _, line in list(fwd.requests)[since:]]
    return [p for p in lines if "/series/" in p and not p.endswith(("/series", "/instances"))]


def test_outside_the_hours_reading_a_file_fetches_that_instance_only(big, tmp_path):
    hours = shut_hours()
    with forwarding("127.0.0.1", big.http_port, http=True) as fwd:
        with mounted(config(f"http://127.0.0.1:{fwd.port}", f'background_hours = "{hours}"'), tmp_path) as m:
            since = len(fwd.requests)  # the pre-flight's search and read come before the mount
            first = sorted((study_dir(m.path) / SMALL).iterdir())[0]
            assert first.read_bytes()[128:132] == b"DICM"  # a user's read always runs
            wait_for(
                lambda: m.stats()["limits"]["pacs"]["outside_hours"]["readahead"] >= 1,
                "the series readahead to be turned down",
            )
            window = m.stats()["limits"]["pacs"]["window"]
        got = retrieves(fwd, since)
    assert len(got) == 1 and "/instances/" in got[0], got  # the file, not its series
    assert window["open"] is False and window["background_hours"] == hours


def test_outside_the_hours_prefetch_waits_or_says_it_will_not(big, tmp_path):
    hours = shut_hours()
    with forwarding("127.0.0.1", big.http_port, http=True) as fwd:
        cfg = config(f"http://127.0.0.1:{fwd.port}", f'background_hours = "{hours}"')
        with mounted(cfg, tmp_path) as m:
            series = study_dir(m.path) / SMALL
            assert series.is_dir()  # the path resolved here: what the prefetch asks of the server comes after
            since = len(fwd.requests)
            res = run([*TROLLEYFS, "prefetch", "--no-wait", str(series)], capture_output=True, text=True, timeout=300)
            assert res.returncode == 75, res
            opens = hours.split("-")[0]
            assert re.search(
                rf"^prefetch: stopped before listing anything: outside the background hours: pacs's background hours "
                rf"\({hours}\) open at \S+T{opens}[+-]\d\d:\d\d; not waiting \(--no-wait\)$",
                res.stdout,
                re.MULTILINE,
            ), res.stdout
            out = tmp_path / "prefetch.out"
            with open(out, "wb") as f:
                proc = subprocess.Popen(
                    [*TROLLEYFS, "prefetch", "--interval", "0.2", str(series)], stdout=f, stderr=subprocess.STDOUT
                )
            try:
                wait_for(lambda: f"waiting: pacs's background hours ({hours}) open at " in out.read_text(), "a wait")
                wait_for(lambda: out.read_text().count("prefetch: waiting: ") >= 2, "the progress to show the wait")
                proc.send_signal(signal.SIGINT)
                assert proc.wait(120) == 130
            finally:
                proc.kill()
        assert [line for _, line in list(fwd.requests)[since:]] == []  # neither asked anything, not even a search
    assert "prefetch: stopped before listing anything" in out.read_text()


def test_a_users_read_during_a_prefetch_is_served_before_the_prefetchs_queue(big, tmp_path):
    # one request a second, files read one by one: the prefetch's 6 readers keep its queue full
    limits = "requests_per_s = 1, burst_s = 1"
    with forwarding("127.0.0.1", big.http_port, http=True) as fwd:
        cfg = config(f"http://127.0.0.1:{fwd.port}", limits, cache='[cache]\nreadahead = "off"')
        with mounted(cfg, tmp_path) as m:
            since = len(fwd.requests)  # the pre-flight's search and read come before the mount
            files = sorted((study_dir(m.path) / SMALL).iterdir())
            proc = subprocess.Popen(
                [*TROLLEYFS, "prefetch", "--jobs", "6", str(files[0].parent)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_for(lambda: len(retrieves(fwd, since)) >= 2, "the prefetch to be under way")
                wait_for(lambda: m.stats()["limits"]["pacs"]["requests_bucket"]["waiting"] >= 4, "its queue")
                before = len(retrieves(fwd, since))
                uid = os.getxattr(files[-1], "user.dicom.SOPInstanceUID").decode()
                assert files[-1].read_bytes()[128:132] == b"DICM"
                order = retrieves(fwd, since)
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(120)
            waited = m.stats()["limits"]["pacs"]["waited_s"]["by_priority"]
    mine = next(i for i, p in enumerate(order) if p.endswith(uid))
    # at most the one request already granted when the read began goes first; the prefetch's queue waits
    assert mine - before <= 1, (before, mine, order[before:])
    assert waited["prefetch"] > 0


def dimse_limited(orthanc: Orthanc, port: int, query: str) -> str:
    """DICOM-QR and C-GET through ``port`` at 2 MB/s, one folder of ``query``."""
    ae = f'host = "127.0.0.1", port = {port}, called_aet = "{orthanc.aet}"'
    return f"""
[servers.pacs]
search   = {{ protocol = "dicom-qr", {ae} }}
retrieve = {{ protocol = "c-get", {ae} }}
timeout = 30
limits = {{ mb_per_s = 2, burst_s = 1 }}
[[folders]]
name = "lim"
query = {{ {query} }}
"""


def test_c_get_objects_and_associations_count_against_the_limits(big, tmp_path):
    """Over DIMSE each association is a request and each object C-GET brings is
    bytes, charged before its C-STORE is answered: the PACS sends the next one
    only then, so what arrives is within the cap plus the one object being
    charged on each association."""
    rate = 2 * MB
    with forwarding("127.0.0.1", big.dicom_port) as fwd:
        with mounted(dimse_limited(big, fwd.port, 'PatientID = "L001"'), tmp_path) as m:
            probe = fwd.connections  # the pre-flight's C-FIND, before the mount (not counted by it)
            dest = tmp_path / "copy"
            subprocess.run(["cp", "-r", str(study_dir(m.path) / SERIES_A), str(dest)], check=True, timeout=300)
            stats = m.stats()["limits"]["pacs"]
        timeline, associations = list(fwd.timeline), fwd.connections - probe
    copied = read_uids(dest, dataset_only=True)  # C-GET's file meta is written anew: the dataset is as stored
    datasets = {part10_sop_instance_uid(b): digest(dataset_bytes(b)) for b in big_files()}
    assert len(copied) == 16 and all(datasets[uid] == d for uid, d in copied.items())
    assert stats["requests"] == associations
    largest = max(len(b) for b in big_files())
    start, length, excess = worst_window(timeline, rate, rate)
    assert excess <= largest * associations, f"{excess / MB:.2f} MB over in the {length} s from {start}"
    print(f"worst window: {excess / MB:+.3f} MB over rate x W + burst, {associations} associations")


def test_c_find_answers_count_against_the_limits(big, tmp_path):
    """The searches' answers are bytes taken from the server too: listing a
    folder and its studies over DICOM-QR charges every PDU the PACS sent,
    counted at a forwarder (and nothing is fetched)."""
    with (
        forwarding("127.0.0.1", big.dicom_port) as fwd,
        mounted(dimse_limited(big, fwd.port, ""), tmp_path, "--no-check") as m,
    ):
        before = m.stats()["limits"]["pacs"]["bytes"]
        sent_before = sum(n for _, n in fwd.timeline)
        for study in (m.path / "lim").iterdir():
            os.listdir(study)  # its series: one C-FIND each
        after = m.stats()["limits"]["pacs"]["bytes"]
        sent = sum(n for _, n in fwd.timeline) - sent_before
        fetched = m.stats()["instances_fetched"]
    assert fetched == 0
    # every PDU is charged; what the forwarder saw adds the associations' set-up and release
    assert 0 < after - before <= sent, (after - before, sent)
    assert after - before >= sent // 2, (after - before, sent)


def test_prefetch_outside_the_hours_reads_nothing_until_they_open_then_everything(big, tmp_path):
    # hours opening at the next whole minute (at least 15 s away, so the walk is done before)
    opening = (dt.datetime.now() + dt.timedelta(seconds=75)).replace(second=0, microsecond=0)
    hours = f"{opening:%H:%M}-{opening + dt.timedelta(hours=1):%H:%M}"
    with forwarding("127.0.0.1", big.http_port, http=True) as fwd:
        cfg = config(f"http://127.0.0.1:{fwd.port}", f'background_hours = "{hours}"')
        with mounted(cfg, tmp_path) as named:
            study = study_dir(named.path).name  # learnt on a mount of its own
        # a fresh mount, whose kernel knows no name below its folders: finding
        # the path's study and series would be searches, and they wait too
        with mounted(cfg, tmp_path, name="fresh") as m:
            since = len(fwd.requests)  # after its pre-flight
            series = m.path / "lim" / study / SMALL
            res = run(
                [*TROLLEYFS, "prefetch", "--interval", "5", str(series)], capture_output=True, text=True, timeout=300
            )
            at = list(fwd.requests)[since:]
            stats = m.stats()
    assert res.returncode == 0, res
    assert f"prefetch: waiting: pacs's background hours ({hours}) open at {opening.isoformat()[:16]}" in res.stdout
    assert "prefetch: read 24 of 24 files" in res.stdout
    offset = time.time() - time.monotonic()  # the forwarder's clock is monotonic: as wall-clock time
    opened = opening.timestamp()
    fetched = [t + offset for t, line in at if "/series/" in line and not line.split("?")[0].endswith("/instances")]
    assert fetched
    asked = [t + offset for t, _ in at]  # searches included: the walk waits for the hours too
    assert all(t >= opened for t in asked), [(opened - t - offset, line) for t, line in at if t + offset < opened]
    assert stats["instances_fetched"] >= 24


def test_check_runs_the_limits_script_on_the_clusters_redis_and_says_what_the_acl_lacks(big, tmp_path):
    # the README's ACL for the shared tier alone: enough for the tier, not for the limits' script
    tier_only = (
        "trolleyfs on >right-password ~trolleyfs:* resetchannels -@all +get +set +mget +exists +pttl +del +pexpire "
        "+rpush +lrange +eval +evalsha +script|load +ping"
    )
    with RedisServer(users=(tier_only, tier_only.replace("trolleyfs on", "limited on", 1) + LIMITS_COMMANDS)) as redis:
        for user, ok in (("trolleyfs", False), ("limited", True)):
            shared = f'[cache.shared]\nurl = "{redis.url}"\nusername = "{user}"\npassword = "right-password"'
            cfg = tmp_path / f"{user}.toml"
            cfg.write_text(config(big.url, "mb_per_s = 50", cache=f"[cache]\n{shared}"))
            cfg.chmod(0o600)
            res = run([*TROLLEYFS, "check", str(cfg)], capture_output=True, text=True, timeout=300)
            rows = {tuple(ln.split()[:2]): ln for ln in res.stdout.splitlines()[2:]}
            assert rows["pacs", "limits"].endswith("ok: 50 MB/s (bursts of 1 s)"), res.stdout
            assert rows["shared", "cache"].split("  ")[-1].startswith("ok:"), res.stdout  # the tier itself works
            script = rows["shared", "limits"]
            if ok:
                assert "ok: the limits' script ran on Redis's clock" in script and res.returncode == 0, res.stdout
            else:
                assert "FAILED" in script and LIMITS_COMMANDS.strip() in script and res.returncode == 1, res.stdout


def test_what_the_pacs_sends_by_c_move_counts_against_the_limits(big, move_port, tmp_path):
    """The PACS's C-STOREs to the receiver (counted at a forwarder the PACS
    sends through) are charged before they are answered: within the cap plus
    the one object being charged on each of its associations."""
    rate = 2 * MB
    store_port = free_port()
    with forwarding("127.0.0.1", store_port, listen_port=move_port) as fwd:
        ae = f'host = "127.0.0.1", port = {big.dicom_port}, called_aet = "{big.aet}"'
        store = f'store_host = "127.0.0.1", store_port = {store_port}, store_aet = "TROLLEYFS"'
        cfg = f"""
[servers.pacs]
search   = {{ protocol = "dicom-qr", {ae} }}
retrieve = {{ protocol = "c-move", {ae}, {store} }}
timeout = 30
limits = {{ mb_per_s = 2, burst_s = 1 }}
[[folders]]
name = "lim"
query = {{ PatientID = "L001" }}
"""
        with mounted(cfg, tmp_path) as m:
            dest = tmp_path / "copy"
            subprocess.run(["cp", "-r", str(study_dir(m.path) / SERIES_A), str(dest)], check=True, timeout=300)
            stats = m.stats()["limits"]["pacs"]
        timeline, associations = list(fwd.timeline_up), fwd.connections
    copied = read_uids(dest, dataset_only=True)  # the receiver writes the file meta anew: the dataset is as stored
    datasets = {part10_sop_instance_uid(b): digest(dataset_bytes(b)) for b in big_files()}
    assert len(copied) == 16 and all(datasets[uid] == d for uid, d in copied.items())
    assert sum(n for _, n in timeline) >= 16 * 512 * 512 * 2 and stats["waited_s"]["rate"] > 0
    largest = max(len(b) for b in big_files())
    start, length, excess = worst_window(timeline, rate, rate)
    assert excess <= largest * associations, f"{excess / MB:.2f} MB over in the {length} s from {start}"
    print(f"worst window: {excess / MB:+.3f} MB over rate x W + burst, {associations} associations from the PACS")
