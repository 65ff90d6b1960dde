"""C-MOVE through real mounts: trolleyfs's storage receiver as the move
destination of a real Orthanc (``DicomModalities``) and a real dcmqrscp
(``HostTable``); both know it as TROLLEYFS at the session's ``move_port``.

Reads are checked dataset-byte for dataset-byte (DIMSE carries datasets: the
file meta group is written anew); C-MOVEs are counted as associations at a TCP
forwarder in front of the PACS; faults give one-line errors and EIO, and the
mount survives them."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pynetdicom import AE, evt

from tests.conftest import MOVE_AET
from tests.mounting import TROLLEYFS_BIN, by_sop_uid, dataset_bytes, force_unmount, mounted
from tests.peers import Peer
from tests.servers.dcmqrscp import Dcmqrscp, free_port
from tests.servers.tcpcount import forwarding
from trolleyfs import cli
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc
from trolleyfs.transport.storage import STORAGE_CLASSES

pytestmark = pytest.mark.integration


def cmove_config(
    peer: Peer, store_port: int, *, store_aet: str = MOVE_AET, retrieve_port: int | None = None, timeout: float = 20
) -> str:
    ae = f'host = "{peer.host}", called_aet = "{peer.aet}"'
    return f"""
[servers.pacs]
search   = {{ protocol = "dicom-qr", {ae}, port = {peer.port} }}
retrieve = {{ protocol = "c-move", {ae}, port = {retrieve_port or peer.port}, store_host = "127.0.0.1", store_port = {store_port}, store_aet = "{store_aet}" }}
timeout = {timeout}
retries = 1

[[folders]]
name = "all"
query = {{}}
"""


def check(tmp_path, config: str, capsys) -> tuple[int, str, str]:
    """``trolleyfs check`` (in this process: nothing forks or mounts): exit code, stdout, stderr."""
    cfg = tmp_path / "check.toml"
    cfg.write_text(config)
    capsys.readouterr()
    code = cli.main(["check", str(cfg)])
    out = capsys.readouterr()
    return code, out.out, out.err


def mount_fails(tmp_path, config: str) -> str:
    """``trolleyfs mount`` as a user runs it: it must fail with one line and mount nothing."""
    cfg, mnt = tmp_path / "m.toml", tmp_path / "m"
    cfg.write_text(config)
    mnt.mkdir()
    try:
        res = subprocess.run(
            [TROLLEYFS_BIN, "mount", str(cfg), str(mnt)],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode != 0 and not os.path.ismount(mnt)
        err = res.stderr.strip()
        assert err.startswith("trolleyfs: ") and "\n" not in err and "Traceback" not in err, err
        return err
    finally:
        force_unmount(mnt)


def biggest_series(root: Path) -> list[Path]:
    series = [d for d in root.glob("*/*") if d.is_dir()]
    return sorted(max(series, key=lambda d: len(os.listdir(d))).iterdir())


# --------------------------------------------------------------------------- reads


def test_series_read_is_one_move_and_dataset_identical(peer, move_port, sample_files, tmp_path):
    by_uid = by_sop_uid(sample_files)
    with (
        forwarding(peer.host, peer.port) as fwd,  # the C-MOVEs go through here, the searches do not
        mounted(cmove_config(peer, move_port, retrieve_port=fwd.port), tmp_path) as m,
    ):
        before = fwd.connections  # the mount's pre-flight read one instance by C-MOVE
        files = biggest_series(m.path / "all")
        assert len(files) >= 4
        for f in files:
            data = f.read_bytes()
            want = by_uid[os.getxattr(f, "user.dicom.SOPInstanceUID").decode()]
            assert dataset_bytes(data) == dataset_bytes(want), f
            assert os.stat(f).st_size == len(data)
        # the first file alone (its first byte waits for no series), then one C-MOVE for the series
        assert fwd.connections - before == 2
        assert m.stats()["series_prefetches"] == 1


def test_the_orthanc_copy_is_what_is_served(orthanc, move_port, tmp_path):
    peer = Peer("orthanc", "127.0.0.1", orthanc.dicom_port, orthanc.aet)
    with mounted(cmove_config(peer, move_port), tmp_path) as m:
        for f in sorted((m.path / "all").rglob("*.dcm"))[:6]:
            uid = os.getxattr(f, "user.dicom.SOPInstanceUID").decode()
            assert dataset_bytes(f.read_bytes()) == dataset_bytes(orthanc.instance_file(uid))


# --------------------------------------------------------------------------- faults


def test_unknown_move_destination(peer, move_port, tmp_path, capsys):
    """The PACS does not know NOBODY: check and mount say so in one line."""
    config = cmove_config(peer, move_port, store_aet="NOBODY")
    code, out, _ = check(tmp_path, config, capsys)
    assert code == 1
    # dcmqrscp answers 0xA801 (destination unknown); Orthanc a bare 0xC000, as for
    # any C-MOVE it cannot carry out: the message then names every likely cause
    said = {
        "dcmqrscp": "does not know the move destination 'NOBODY' (status 0xA801)",
        "orthanc": "does the PACS know AE NOBODY",
    }[peer.kind]
    assert said in out, out
    err = mount_fails(tmp_path, config)
    assert said in err


def test_pacs_that_cannot_connect_back(peer, tmp_path, capsys):
    """The PACS knows TROLLEYFS at move_port, but we listen elsewhere (as if a
    firewall dropped its connections): the error says what to check."""
    code, out, _ = check(tmp_path, cmove_config(peer, free_port()), capsys)
    assert code == 1
    assert "FAILED" in out and "firewall" in out, out


def test_receiver_port_taken(orthanc, tmp_path, capsys):
    peer = Peer("orthanc", "127.0.0.1", orthanc.dicom_port, orthanc.aet)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = cmove_config(peer, port)
        code, _, err = check(tmp_path, config, capsys)
        assert code == 2 and "Traceback" not in err
        line = err.strip()
        assert line.startswith("trolleyfs: C-MOVE receiver: cannot listen on 127.0.0.1:") and "\n" not in line
        assert "choose another store_port" in line
        assert f"cannot listen on 127.0.0.1:{port}" in mount_fails(tmp_path, config)


@contextmanager
def elsewhere(aet: str) -> Iterator[int]:
    """A storage SCP on another port that takes every object: where a PACS whose
    entry for us is wrong sends them instead."""
    ae = AE(ae_title=aet)
    for uid in STORAGE_CLASSES:
        ae.add_supported_context(uid)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0x0000)])
    assert server is not None  # block=False: the running server
    try:
        yield port
    finally:
        server.shutdown()


def test_move_reported_done_but_nothing_arrived(sample_files, move_port, tmp_path):
    files = sample_files[:12]
    with elsewhere(MOVE_AET) as other_port:
        qr = Dcmqrscp(files, move_destinations={"wrong": (MOVE_AET, "127.0.0.1", other_port)})
        qr.start()
        try:
            peer = Peer("dcmqrscp", qr.host, qr.port, qr.aet)
            with mounted(cmove_config(peer, move_port, timeout=3), tmp_path, "--no-check") as m:
                f = next((m.path / "all").rglob("*.dcm"))
                with pytest.raises(OSError) as info:
                    f.read_bytes()
                assert info.value.errno == errno.EIO
                assert "arrived here within 3 s" in m.log_text()
                assert os.listdir(m.path / "all")  # the mount still answers
        finally:
            qr.cleanup()


def test_pacs_killed_mid_series_and_restarted(move_port, tmp_path):
    big = [
        sampledata.StudySpec(
            "KILL^MOVE", "KM1", "20200101", "Kill test", (sampledata.SeriesSpec("CT", "Long", 40, 256, 256),)
        )
    ]
    files = by_sop_uid(list(sampledata.generate(big)))
    server = Orthanc(workdir=str(tmp_path / "orthanc"), modalities={"trolleyfs": (MOVE_AET, "127.0.0.1", move_port)})
    server.start(timeout=120)
    try:
        server.upload(list(files.values()))
        peer = Peer("orthanc", "127.0.0.1", server.dicom_port, server.aet)
        with mounted(cmove_config(peer, move_port, timeout=5), tmp_path) as m:
            paths = biggest_series(m.path / "all")
            assert len(paths) == 40

            def same(p) -> bool:
                return dataset_bytes(p.read_bytes()) == dataset_bytes(
                    files[os.getxattr(p, "user.dicom.SOPInstanceUID").decode()]
                )

            assert same(paths[0])  # starts the series move
            assert server.proc is not None
            server.proc.send_signal(signal.SIGKILL)  # gone, mid-series if still sending
            server.proc.wait()
            for p in paths[1:]:
                try:
                    assert same(p)  # already here: exact
                except OSError as exc:
                    assert exc.errno == errno.EIO
            server.start(timeout=120)  # same ports, same storage
            assert all(same(p) for p in paths)
            assert "Traceback" not in m.log_text()
    finally:
        server.cleanup()


def test_foreign_objects_are_refused_and_never_served(orthanc, move_port, sample_files, tmp_path):
    """While a mount's receiver listens, a sender nobody asked for (storescu)
    is refused at the association; Orthanc's own AE title from its address
    sending what nobody waits for gets 0x0124: neither object reaches a
    reader or a cache.  (Mid-retrieval: tests/integration/test_cmove_senders.py.)"""
    peer = Peer("orthanc", "127.0.0.1", orthanc.dicom_port, orthanc.aet)
    foreign = tmp_path / "foreign.dcm"
    foreign.write_bytes(sample_files[0])

    def storescu(*aet: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/usr/bin/storescu", "-v", *aet, "-aec", MOVE_AET, "127.0.0.1", str(move_port), str(foreign)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    with mounted(cmove_config(peer, move_port), tmp_path) as m:
        res = storescu()
        assert res.returncode != 0 and "Association Rejected" in res.stderr, res
        res = storescu("-aet", orthanc.aet)
        assert res.returncode != 0 and "Store Response (Unknown Status: 0x124)" in res.stderr, res
        log = m.log_text()
        assert "refused association from STORESCU@127.0.0.1: calling AE title 'STORESCU' is not pacs's" in log, log
        assert "no retrieval waits for it" in log
        res = storescu("-aet", orthanc.aet)  # the same sender again: refused, and not logged again
        assert res.returncode != 0 and "Store Response (Unknown Status: 0x124)" in res.stderr, res
        assert m.log_text().count("WARNING trolleyfs.storescp: C-MOVE receiver: refused instance") == 1
        assert m.stats()["instances_fetched"] == 0
