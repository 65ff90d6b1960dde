"""The C-MOVE receiver takes objects from the PACS that was asked, and from
nobody else, also while a retrieval waits (issue 17, defect 1).

A real dcmqrscp sends its C-STOREs through a gated TCP forwarder
(:mod:`tests.servers.gate`): the test shuts the gate, starts a read through
a real mount, waits until the PACS's association is held at the gate (the
read now waits for its C-MOVE), and then lets a foreign sender (dcmtk's
``storescu -aet EVILMODALITY``, or the PACS's own AE title from another
address) send an object with the awaited SOP Instance UID, another
PatientName and zeroed pixels.  Then the gate opens: the file read must be the
PACS's object, dataset-byte for dataset-byte, and the foreign sender refused
and logged."""

from __future__ import annotations

import io
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from tests.conftest import MOVE_AET
from tests.mounting import by_sop_uid, dataset_bytes, mounted, wait_for
from tests.servers.dcmqrscp import STORESCU, Dcmqrscp, free_port
from tests.servers.gate import GatedForwarder, ReplyGate, gated

pytestmark = pytest.mark.integration

EVIL_NAME = "EVIL^FOREIGN"


@pytest.fixture(scope="module")
def store_port() -> int:
    """The port the mounts' receivers listen on (the gate forwards there)."""
    return free_port()


@pytest.fixture(scope="module")
def gate(store_port) -> Iterator[GatedForwarder]:
    with gated(GatedForwarder("127.0.0.1", store_port)) as fwd:
        yield fwd


@pytest.fixture(scope="module")
def pacs(sample_files, gate) -> Iterator[Dcmqrscp]:
    """dcmqrscp with the sample data; its move destination TROLLEYFS is the gate."""
    qr = Dcmqrscp(sample_files, move_destinations={"trolleyfs": (MOVE_AET, "127.0.0.1", gate.port)})
    qr.start()
    try:
        yield qr
    finally:
        qr.cleanup()


def config(pacs: Dcmqrscp, store_port: int, retrieve_port: int | None = None) -> str:
    ae = f'host = "{pacs.host}", called_aet = "{pacs.aet}"'
    return f"""
[servers.pacs]
search   = {{ protocol = "dicom-qr", {ae}, port = {pacs.port} }}
retrieve = {{ protocol = "c-move", {ae}, port = {retrieve_port or pacs.port}, store_port = {store_port}, store_aet = "{MOVE_AET}" }}
timeout = 120
retries = 0

[[folders]]
name = "all"
query = {{}}
"""


def foreign_copy(data: bytes) -> bytes:
    """The same SOP Instance (and series, study), another patient, black pixels."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientName = EVIL_NAME
    ds.PixelData = bytes(len(ds.PixelData))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def storescu(port: int, files: list[Path], aet: str = "EVILMODALITY") -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu sending ``files`` to our receiver as ``aet``, on one association."""
    return subprocess.run(
        # bounded: on the old code a receiver that takes the objects can hold a sender up
        [STORESCU, "-v", "-td", "30", "-aet", aet, "-aec", MOVE_AET, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=90,
    )


@contextmanager
def in_background(work: Callable[[], object]) -> Iterator[dict[str, object]]:
    """Run ``work`` in a thread; the dict gets its ``result`` or ``error``; joined at exit."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["result"] = work()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        thread.join(300)
        assert not thread.is_alive(), "the background read did not end"


@contextmanager
def racing(
    gate: GatedForwarder | ReplyGate, work: Callable[[], object], let_through: int = 0
) -> Iterator[dict[str, object]]:
    """Shut the gate, start ``work`` (a read) in the background and wait until
    the gate holds something of the PACS's: the read now waits for its
    C-MOVE.  The block races against it; at its end the gate opens and the
    work is awaited (its ``result`` or ``error`` in the dict)."""
    if isinstance(gate, GatedForwarder):
        gate.shut(let_through)
    else:
        gate.shut()
    try:
        with in_background(work) as out:
            try:
                at_the_gate(gate, out)
                yield out
            finally:
                gate.open()
    finally:
        gate.open()


def at_the_gate(gate: GatedForwarder | ReplyGate, work: dict[str, object]) -> None:
    """Wait until the gate holds the PACS back (the retrieval now waits for it)."""
    wait_for(lambda: gate.held >= 1 or bool(work), "the PACS held at the gate")
    assert gate.held >= 1, f"the read ended before the PACS sent anything: {work}"


def cp_r(src: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    """``cp -r`` as a user runs it (bounded: on the old code it could wait for a long time)."""
    return subprocess.run(["cp", "-r", str(src), str(dest)], capture_output=True, text=True, timeout=200)


def series_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SeriesInstanceUID)


def uid_in(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def foreign_series(root: Path, by_uid: dict[str, bytes], tmp_path: Path) -> tuple[Path, list[Path]]:
    """The biggest series of the mount and a foreign copy of each of its
    instances.  No file of the series is touched (a stat would fetch it)."""
    series = max((d for d in root.glob("*/*") if d.is_dir()), key=lambda d: len(os.listdir(d)))
    series_uid = os.getxattr(series, "user.dicom.SeriesInstanceUID").decode()
    uids = [u for u, d in by_uid.items() if series_of(d) == series_uid]
    assert len(uids) == len(os.listdir(series)) >= 4
    (tmp_path / "evil").mkdir()
    evil = []
    for i, uid in enumerate(uids):
        evil.append(tmp_path / "evil" / f"{i:03}.dcm")
        evil[-1].write_bytes(foreign_copy(by_uid[uid]))
    return series, evil


def the_pacs_object(read: dict[str, object], by_uid: dict[str, bytes]) -> bytes:
    """The read's bytes, checked to be the PACS's object (dataset-byte for dataset-byte)."""
    assert "error" not in read, read
    data = read["result"]
    assert isinstance(data, bytes)
    assert EVIL_NAME.encode() not in data, "the foreign object was served"
    assert dataset_bytes(data) == dataset_bytes(by_uid[uid_in(data)])
    return data


def rejected(sent: subprocess.CompletedProcess[str]) -> bool:
    return sent.returncode != 0 and "Association Rejected" in sent.stderr


def test_a_foreign_object_for_a_waiting_read_is_refused(pacs, gate, store_port, sample_files, tmp_path):
    """While ``cat`` waits for its C-MOVE (the PACS's C-STORE held at the
    gate), storescu sends objects with the awaited SOP Instance UIDs: the
    association is refused, the read gets the PACS's object."""
    by_uid = by_sop_uid(sample_files)
    with mounted(config(pacs, store_port), tmp_path) as m:
        series, evil = foreign_series(m.path / "all", by_uid, tmp_path)
        f = sorted(series.iterdir())[0]
        with racing(gate, f.read_bytes) as read:
            sent = storescu(store_port, evil)
        data = the_pacs_object(read, by_uid)
        assert rejected(sent), sent
        log = m.log_text()
        assert "refused association from EVILMODALITY@127.0.0.1" in log, log
        assert sum("EVILMODALITY" in line for line in log.splitlines()) == 1  # logged once
        assert f.read_bytes() == data  # and what is cached is the same


def test_a_foreign_copy_after_the_pacs_own_is_refused(pacs, store_port, sample_files, tmp_path):
    """The PACS has sent the object; its C-MOVE response is held on the way:
    storescu sends foreign copies now.  The read must still be the PACS's
    object (on the old code the later copy replaced it)."""
    by_uid = by_sop_uid(sample_files)
    with (
        gated(ReplyGate(pacs.host, pacs.port)) as replies,
        mounted(config(pacs, store_port, retrieve_port=replies.port), tmp_path) as m,
    ):
        series, evil = foreign_series(m.path / "all", by_uid, tmp_path)
        f = sorted(series.iterdir())[0]
        with racing(replies, f.read_bytes) as read:
            sent = storescu(store_port, evil)
        the_pacs_object(read, by_uid)
        assert rejected(sent), sent
        assert "refused association from EVILMODALITY@127.0.0.1" in m.log_text()


def test_a_foreign_series_during_cp_r_is_refused(pacs, gate, store_port, sample_files, tmp_path):
    """During ``cp -r`` of a series (its series C-MOVE held at the gate),
    storescu sends the whole series, foreign: every file copied is the PACS's."""
    by_uid = by_sop_uid(sample_files)
    with mounted(config(pacs, store_port), tmp_path) as m:
        series, evil = foreign_series(m.path / "all", by_uid, tmp_path)
        dest = tmp_path / "copy"
        # the first file is moved alone; the series C-MOVE that follows is held
        with racing(gate, lambda: cp_r(series, dest), let_through=1) as copy:
            sent = storescu(store_port, evil)
        assert "error" not in copy, copy
        assert copy["result"].returncode == 0, copy  # type: ignore[attr-defined]
        copied = sorted(dest.iterdir())
        assert len(copied) == len(evil)
        for p in copied:
            the_pacs_object({"result": p.read_bytes()}, by_uid)
        assert rejected(sent), sent
        assert "refused association from EVILMODALITY@127.0.0.1" in m.log_text()


def test_the_pacs_ae_title_from_another_address_is_refused(pacs, gate, store_port, sample_files, tmp_path):
    """A sender that calls itself by the PACS's AE title but connects from
    another address (127.0.0.2) is refused as well."""
    by_uid = by_sop_uid(sample_files)
    with mounted(config(pacs, store_port), tmp_path) as m:
        series, evil = foreign_series(m.path / "all", by_uid, tmp_path)
        forged = [pydicom.dcmread(p) for p in evil]
        f = sorted(series.iterdir())[0]
        with racing(gate, f.read_bytes) as read:
            ae = AE(ae_title=pacs.aet)  # the PACS's own AE title
            ae.add_requested_context(forged[0].SOPClassUID, forged[0].file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", store_port, ae_title=MOVE_AET, bind_address=("127.0.0.2", 0))
            try:
                accepted = assoc.is_established
                statuses = [assoc.send_c_store(ds).get("Status") for ds in forged] if accepted else []
            finally:
                if assoc.is_established:
                    assoc.release()
        the_pacs_object(read, by_uid)
        assert assoc.is_rejected and not accepted, f"an association from 127.0.0.2 was accepted: {statuses}"
        assert f"refused association from {pacs.aet}@127.0.0.2" in m.log_text()


def test_a_foreign_object_while_nothing_waits_is_refused(pacs, store_port, sample_files, tmp_path):
    """Nothing is being retrieved: a foreign sender is refused at the
    association; the PACS itself (its AE title, its address) sending an object
    nobody asked for gets 0x0124.  Neither reaches a reader or a cache."""
    foreign = tmp_path / "foreign.dcm"
    foreign.write_bytes(sample_files[0])
    with mounted(config(pacs, store_port), tmp_path) as m:
        sent = storescu(store_port, [foreign])
        assert rejected(sent), sent
        sent = storescu(store_port, [foreign], aet=pacs.aet)
        assert sent.returncode != 0 and "Store Response (Unknown Status: 0x124)" in sent.stderr, sent
        log = m.log_text()
        assert "refused association from EVILMODALITY@127.0.0.1" in log
        assert "no retrieval waits for it" in log
        assert m.stats()["instances_fetched"] == 0


def test_refused_associations_say_why(pacs, store_port, tmp_path):
    """An association addressed to another AE title is rejected, and one whose
    presentation contexts the receiver cannot accept is useless: both are
    logged with the sender and the reason (the old receiver said nothing)."""
    with mounted(config(pacs, store_port), tmp_path) as m:
        ae = AE(ae_title=pacs.aet)
        ae.add_requested_context(pydicom.uid.CTImageStorage)
        assoc = ae.associate("127.0.0.1", store_port, ae_title="SOMEONE-ELSE")
        assert assoc.is_rejected
        ae = AE(ae_title=pacs.aet)
        ae.add_requested_context("1.2.826.0.1.3680043.10.1087.999.1")  # a storage class nobody knows
        assoc = ae.associate("127.0.0.1", store_port, ae_title=MOVE_AET)
        assert not assoc.is_established  # accepted without a context: pynetdicom's requestor aborts it
        log = m.log_text()
        assert (
            f"refused association from {pacs.aet}@127.0.0.1: it is addressed to 'SOMEONE-ELSE', "
            f"this receiver is '{MOVE_AET}'" in log
        ), log
        no_context = f"association from {pacs.aet}@127.0.0.1 has no presentation context this receiver accepts"
        wait_for(lambda: no_context in m.log_text(), "the log line")  # written after the A-ASSOCIATE-AC went out
