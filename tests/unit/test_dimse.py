"""DIMSE helpers without a DICOM peer: turning identifiers into attributes,
building identifiers, status mapping, presentation contexts, and deadlines,
cancellation and the connection limit against a TCP server that never answers."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
from collections.abc import Iterator
from typing import cast

import pytest
import trio
from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode, encode

from tests.servers.slowfind import SlowFind
from trolleyfs.endpoints import CGetEndpoint, DicomQrEndpoint, Server
from trolleyfs.errors import ProtocolError, Unavailable
from trolleyfs.model import InstanceRef, Query, SeriesRef
from trolleyfs.protocols import endpoint as Endpoint
from trolleyfs.retrieve.cget import CGet
from trolleyfs.search.cfind import DicomQR
from trolleyfs.transport.dimse import limiter_for, settle_reactor
from trolleyfs.transport.dimse_data import attrs_from_dataset, query_dataset
from trolleyfs.transport.dimse_errors import status_error

# --------------------------------------------------------------------------- identifiers -> attributes


def _elem(group: int, elem: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element, padded to even length."""
    if len(value) % 2:
        value += b"\x00" if vr == "UI" else b" "
    if vr in ("OB", "OW", "SQ", "UN", "UT", "UC", "UR"):
        return struct.pack("<HH2sHI", group, elem, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def _decoded(*elems: bytes) -> Dataset:
    """A dataset decoded the way pynetdicom decodes a C-FIND response identifier."""
    return decode(io.BytesIO(b"".join(elems)), False, True)


def test_attrs_keep_invalid_values_and_dicom_forms() -> None:
    ds = _decoded(
        _elem(0x0008, 0x0005, "CS", b"ISO_IR 192"),
        _elem(0x0008, 0x0008, "CS", b"ORIGINAL\\PRIMARY"),
        _elem(0x0008, 0x0020, "DA", b"13495156"),  # not a date
        _elem(0x0008, 0x0052, "CS", b"STUDY"),
        _elem(0x0008, 0x0061, "CS", b"CT\\MR"),
        _elem(0x0008, 0x1030, "LO", b"Thorax / Bauch"),
        _elem(0x0009, 0x0010, "LO", b"PRIVATE CREATOR"),
        _elem(0x0010, 0x0010, "PN", "MÜLLER^JÜRGEN=Müller^Jürgen".encode()),
        _elem(0x0010, 0x0020, "LO", b""),  # empty: left out
        _elem(0x0020, 0x000D, "UI", b"1.2.3 4"),  # a UID with a space: kept as sent
        _elem(0x0020, 0x0013, "IS", b"abc"),  # not a number
        _elem(0x0020, 0x1208, "IS", b" 12 "),
        _elem(0x0028, 0x0010, "US", struct.pack("<H", 512)),
        _elem(0x0040, 0x0275, "SQ", b""),
    )
    attrs = attrs_from_dataset(ds)
    assert attrs == {
        "ImageType": "ORIGINAL\\PRIMARY",
        "StudyDate": "13495156",
        "ModalitiesInStudy": "CT\\MR",
        "StudyDescription": "Thorax / Bauch",
        "PatientName": "MÜLLER^JÜRGEN=Müller^Jürgen",
        "StudyInstanceUID": "1.2.3 4",
        "InstanceNumber": "abc",
        "NumberOfStudyRelatedInstances": "12",
        "Rows": "512",
    }


def test_attrs_implicit_vr_and_other_charsets() -> None:
    # implicit VR: no VR in the stream, taken from the dictionary
    raw = b"".join(
        struct.pack("<HHI", g, e, len(v)) + v
        for g, e, v in [
            (0x0008, 0x0005, b"ISO_IR 100"),
            (0x0010, 0x0010, "DÖE^JÖHN".encode("latin-1")),
            (0x0020, 0x000D, b"1.2.840.1\x00"),
        ]
    )
    attrs = attrs_from_dataset(decode(io.BytesIO(raw), True, True))
    assert attrs == {"PatientName": "DÖE^JÖHN", "StudyInstanceUID": "1.2.840.1"}
    # ISO 2022 with escape sequences (Japanese example of PS3.5 H.3.1)
    jp = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"
    ds = _decoded(_elem(0x0008, 0x0005, "CS", b"\\ISO 2022 IR 87"), _elem(0x0010, 0x0010, "PN", jp))
    assert attrs_from_dataset(ds)["PatientName"] == "Yamada^Tarou=山田^太郎=やまだ^たろう"


def test_attrs_survive_an_unknown_charset() -> None:
    ds = _decoded(_elem(0x0008, 0x0005, "CS", b"ISO_IR 999"), _elem(0x0010, 0x0010, "PN", b"DOE^JOHN"))
    assert attrs_from_dataset(ds) == {"PatientName": "DOE^JOHN"}


# --------------------------------------------------------------------------- attributes -> identifiers


def test_query_dataset_encodes() -> None:
    ds = query_dataset(
        "STUDY",
        {"PatientName": "TEST*", "StudyDate": "20210101-20221231", "ModalitiesInStudy": "CT\\MR"},
        ("StudyInstanceUID", "PatientName", "NumberOfStudyRelatedSeries", "ReferencedStudySequence", "NoSuchKeyword"),
    )
    assert "SpecificCharacterSet" not in ds
    back = decode(io.BytesIO(cast(bytes, encode(ds, False, True))), False, True)
    assert back.QueryRetrieveLevel == "STUDY"
    assert back.PatientName == "TEST*"
    assert back.StudyDate == "20210101-20221231"
    assert list(back.ModalitiesInStudy) == ["CT", "MR"]
    assert back.StudyInstanceUID == "" and back.NumberOfStudyRelatedSeries is None
    assert back.ReferencedStudySequence == []
    assert "NoSuchKeyword" not in back


def test_query_dataset_non_ascii_sets_utf8() -> None:
    ds = query_dataset("STUDY", {"PatientName": "MÜLLER*"}, ("StudyInstanceUID",))
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert "MÜLLER*".encode() in cast(bytes, encode(ds, False, True))


# --------------------------------------------------------------------------- statuses, contexts


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [
        (0xA700, Unavailable, "out of resources"),
        (0xA702, Unavailable, "out of resources"),
        (0xA900, ProtocolError, "0xA900"),
        (0xC000, ProtocolError, "0xC000"),
        (0xC311, ProtocolError, "0xC311"),
        (0x0122, ProtocolError, "0x0122"),
        (0xFE00, Unavailable, "cancelled"),
        (None, Unavailable, "no answer"),
    ],
)
def test_status_errors(code: int | None, kind: type, text: str) -> None:
    status = Dataset()
    if code is not None:
        status.Status = code
        status.ErrorComment = "it broke"
    err = status_error(status, "pacs", "study search", "C-FIND")
    assert type(err) is kind
    assert text in str(err) and err.server == "pacs" and err.what == "study search"
    if code is not None:
        assert "it broke" in str(err)


# --------------------------------------------------------------------------- a peer that never answers


class SilentServer:
    """Accepts TCP connections and never says a word; counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)

    def open_connections(self) -> int:
        """Connections the client has not closed (what it sent is read and dropped)."""
        alive = 0
        with self.lock:
            for c in self.conns:
                c.setblocking(False)
                try:
                    while c.recv(65536):
                        pass
                except BlockingIOError:
                    alive += 1  # nothing more to read, but no EOF either
                except OSError:
                    pass
        return alive

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the thread (close() alone does not)
        self.sock.close()
        self.thread.join(5)
        with self.lock:
            for c in self.conns:
                c.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def _server(port: int, timeout: float, max_connections: int = 8) -> Server:
    ep = Endpoint("dicom-qr", host="127.0.0.1", port=port, called_aet="SILENT")
    return Server(
        "silent",
        ep,
        Endpoint("c-get", host="127.0.0.1", port=port),
        timeout=timeout,
        retries=0,
        max_connections=max_connections,
    )


def _busy_threads() -> set[str]:
    # trio's idle worker threads are parked as "Trio thread N"; anything else is at work
    return {t.name for t in threading.enumerate() if not t.name.startswith("Trio thread")}


async def _no_threads_left_beyond(before: set[str]) -> None:
    for _ in range(50):
        left = _busy_threads() - before
        if not left:
            return
        await trio.sleep(0.1)
    raise AssertionError(f"threads still running: {left}")


async def test_deadline_when_the_peer_never_answers(silent: SilentServer) -> None:
    before = _busy_threads()
    server = _server(silent.port, timeout=0.5)
    assert isinstance(server.search, DicomQrEndpoint) and isinstance(server.retrieve, CGetEndpoint)
    # the messages name the deadline: each call ended because it fired (the
    # peer never answers, so nothing else could have ended them)
    with pytest.raises(Unavailable, match=r"no answer .* within 0.5 s"):
        await DicomQR(server, server.search).find_studies(Query())
    with pytest.raises(Unavailable, match="no answer"):
        await CGet(server, server.retrieve).fetch_instance(InstanceRef("1.2", "1.2.3", "1.2.3.4"))
    with pytest.raises(Unavailable, match="no answer"):
        async for _ in CGet(server, server.retrieve).fetch_series(SeriesRef("1.2", "1.2.3"), []):
            pass
    await _no_threads_left_beyond(before)


async def test_cancelling_does_not_wait_for_the_deadline(silent: SilentServer) -> None:
    before = _busy_threads()
    server = _server(silent.port, timeout=60)  # only cancellation can end these in time
    assert isinstance(server.search, DicomQrEndpoint) and isinstance(server.retrieve, CGetEndpoint)
    with trio.move_on_after(0.3) as scope:
        await DicomQR(server, server.search).find_studies(Query())
    assert scope.cancelled_caught
    with trio.move_on_after(0.3) as scope:
        async for _ in CGet(server, server.retrieve).fetch_series(SeriesRef("1.2", "1.2.3"), []):
            pass
    assert scope.cancelled_caught
    # the worker threads (blocked in pynetdicom's association request) are woken
    # and end too, long before their own 60 s timeout could have ended them
    await _no_threads_left_beyond(before)
    assert silent.open_connections() == 0


async def test_associations_are_limited_per_server(silent: SilentServer) -> None:
    """max_connections bounds the associations of the searcher and the fetcher together."""
    server = _server(silent.port, timeout=1.0, max_connections=2)
    assert isinstance(server.search, DicomQrEndpoint) and isinstance(server.retrieve, CGetEndpoint)
    assert limiter_for(server) is limiter_for(server)
    assert limiter_for(server).total_tokens == 2
    qr, cget = DicomQR(server, server.search), CGet(server, server.retrieve)
    errors: list[Exception] = []

    async def search() -> None:
        try:
            await qr.find_series("1.2")
        except Unavailable as exc:
            errors.append(exc)

    async def read() -> None:
        try:
            await cget.fetch_instance(InstanceRef("1.2", "1.2.3", "1.2.3.4"))
        except Unavailable as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(search)
            nursery.start_soon(read)
        await trio.sleep(0.5)
        assert len(silent.conns) == 2  # two waiting for their deadline, two waiting for the limiter
    assert len(errors) == 4
    assert len(silent.conns) == 4


# --------------------------------------------------------------------------- C-GET's receiver checks each object


class _StoreEvent:
    """What pynetdicom hands the C-STORE handler: the dataset as received, behind a Part-10 header."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encoded_dataset(self) -> bytes:
        return self.data


def test_a_dataset_cut_short_is_refused_by_the_cget_receiver(sample_files: list[bytes]) -> None:
    from trolleyfs.retrieve.cget import _Receiver

    got: list[str] = []
    receiver = _Receiver("pacs", "series 1", lambda uid, data: got.append(uid))
    whole, cut = sample_files[0], sample_files[1][:-300]
    assert receiver.on_store(_StoreEvent(whole)) == 0x0000
    assert receiver.on_store(_StoreEvent(cut)) == 0xC000  # "cannot understand": never delivered
    assert len(got) == 1 and "is damaged or incomplete" in str(receiver.errors[0])


# --------------------------------------------------------------------------- deadlines bound silence, not progress


def _slow_server(scp: SlowFind, timeout: float) -> Server:
    ep = Endpoint("dicom-qr", host=scp.host, port=scp.port, called_aet=scp.aet)
    return Server("slow", ep, Endpoint("c-get", host=scp.host, port=scp.port), timeout=timeout, retries=0)


async def test_an_answer_longer_than_the_timeout_is_read_whole_while_it_keeps_coming() -> None:
    timeout = 1.5
    with SlowFind(rows=1500, every=100, pause=0.4) as scp:  # pauses alone: 4x the timeout
        assert scp.total_pause() >= 4 * timeout and scp.longest_pause() < timeout / 3
        server = _slow_server(scp, timeout)
        assert isinstance(server.search, DicomQrEndpoint)
        studies = await DicomQR(server, server.search).find_studies(Query())
        assert len({s.uid for s in studies}) == 1500 and scp.answers == 1


async def test_silence_in_the_middle_of_an_answer_ends_it_and_says_so() -> None:
    timeout = 1.5
    with SlowFind(rows=300, every=100, pause=0.01, gap=3 * timeout, gap_after=150) as scp:
        server = _slow_server(scp, timeout)
        assert isinstance(server.search, DicomQrEndpoint)
        with pytest.raises(Unavailable, match=r"no answer from SLOWFIND@.* for 1\.5 s \(it had begun to answer\)"):
            await DicomQR(server, server.search).find_studies(Query())
        assert scp.answers == 0


class _Reactor:
    """pynetdicom's reactor as settle_reactor sees it: told to run (its
    checkpoint set), still saying "paused" until its thread gets to run,
    here after ``wakes_after`` looks."""

    def __init__(self, running: bool, wakes_after: int) -> None:
        self._reactor_checkpoint = threading.Event()
        if running:
            self._reactor_checkpoint.set()
        self.looks = 0
        self._wakes_after = wakes_after

    @property
    def _is_paused(self) -> bool:
        self.looks += 1
        return self.looks <= self._wakes_after


def test_a_new_exchange_waits_until_the_reactor_has_resumed() -> None:
    """The next C-FIND on an association waits until pynetdicom's reactor has
    woken from the last one (else it takes the answer for a stray request and
    drops it, and the search ends with no rows); a reactor that is running, or
    paused on purpose, is not waited for."""
    woken_late = _Reactor(running=True, wakes_after=50)
    settle_reactor(woken_late)
    assert woken_late.looks == 51  # it looked until the reactor said it runs
    running = _Reactor(running=True, wakes_after=0)
    settle_reactor(running)
    assert running.looks == 1
    paused_on_purpose = _Reactor(running=False, wakes_after=10**9)
    settle_reactor(paused_on_purpose)
    assert paused_on_purpose.looks == 0
    settle_reactor(object())  # an association without a reactor: nothing to wait for
