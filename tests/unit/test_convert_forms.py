"""Objects in another transfer syntax, over fake fetchers: the server asked
first and its answer checked, local conversion where it declined (by an
error or by sending another syntax), a series remembered as declined, errors
that asking the stored form cannot cure; and through the real Store, both
forms of an instance cached side by side."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from tests import compressed
from tests.fakes.reading import opened
from trolleyfs.errors import NotFound, RemoteError, Unavailable
from trolleyfs.model import InstanceRef, SeriesRef
from trolleyfs.part10 import part10_sop_instance_uid, part10_transfer_syntax
from trolleyfs.read.convert.forms import FormFetcher, TranscodingFetcher
from trolleyfs.read.convert.transcode import Converter, convert_bytes

TARGET = ExplicitVRLittleEndian


@pytest.fixture(scope="module")
def objects() -> dict[str, bytes]:
    """Three J2K objects of one series, by SOP Instance UID."""
    spec = compressed.study(per_series=3, size=32)
    files = [f for f in compressed.generate(spec) if part10_transfer_syntax(f) == JPEG2000Lossless]
    return {part10_sop_instance_uid(f): f for f in files}


def ref_of(data: bytes, form: str = "") -> InstanceRef:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return InstanceRef(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, form)


class Fake:
    """A fetcher answering from ``objects`` (converted to ``syntax`` if given),
    or failing with ``error``; counts calls."""

    name = "pacs"

    def __init__(
        self,
        objects: dict[str, bytes],
        syntax: str | None = None,
        error: RemoteError | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.objects, self.syntax, self.error, self.fail_after = objects, syntax, error, fail_after
        self.instances: list[str] = []
        self.series = 0

    def _data(self, uid: str) -> bytes:
        data = self.objects[uid]
        return convert_bytes(data, self.syntax) if self.syntax else data

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        self.instances.append(ref.instance_uid)
        if self.error is not None and self.fail_after is None:
            raise self.error
        return self._data(ref.instance_uid)

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncIterator[tuple[str, bytes]]:
        self.series += 1
        for n, uid in enumerate(instance_uids):
            if self.error is not None and n >= (self.fail_after or 0):
                raise self.error
            yield uid, self._data(uid)

    async def aclose(self) -> None:
        pass


def is_target(data: bytes) -> bool:
    return part10_transfer_syntax(data) == TARGET


async def test_a_server_that_transcodes_is_taken_at_its_word(objects: dict[str, bytes]) -> None:
    stored, asking, conv = Fake(objects), Fake(objects, syntax=TARGET), Converter()
    t = TranscodingFetcher(stored, asking, conv, TARGET)
    for data in objects.values():
        assert is_target(await t.fetch_instance(ref_of(data, TARGET)))
    assert stored.instances == [] and len(asking.instances) == 3
    assert conv.stats()["converted_locally"] == 0 and t.stats() == {"transcoded_by_server": 3, "server_declined": 0}


async def test_an_answer_in_another_syntax_is_converted_here_and_the_series_is_remembered(
    objects: dict[str, bytes],
) -> None:
    stored, asking, conv = Fake(objects), Fake(objects), Converter()  # asking ignores the request (WADO-URI on Orthanc)
    t = TranscodingFetcher(stored, asking, conv, TARGET)
    first, *rest = objects.values()
    assert is_target(await t.fetch_instance(ref_of(first, TARGET)))
    assert len(asking.instances) == 1 and stored.instances == []  # its answer was converted: no second download
    for data in rest:
        assert is_target(await t.fetch_instance(ref_of(data, TARGET)))
    assert len(asking.instances) == 1 and len(stored.instances) == 2  # the series goes to the stored form now
    assert conv.stats()["converted_locally"] == 3 and t.stats()["server_declined"] == 1


async def test_a_server_error_falls_back_to_the_stored_form(objects: dict[str, bytes]) -> None:
    stored = Fake(objects)
    asking = Fake(objects, error=Unavailable("HTTP 500: Cannot transcode image", server="pacs"))
    t = TranscodingFetcher(stored, asking, Converter(), TARGET)
    data = next(iter(objects.values()))
    out = await t.fetch_instance(ref_of(data, TARGET))
    assert is_target(out) and len(stored.instances) == 1
    assert dcmread(io.BytesIO(out)).pixel_array.tolist() == dcmread(io.BytesIO(data)).pixel_array.tolist()


async def test_not_found_is_not_cured_by_asking_again(objects: dict[str, bytes]) -> None:
    stored, asking = Fake(objects), Fake(objects, error=NotFound("HTTP 404", server="pacs"))
    t = TranscodingFetcher(stored, asking, Converter(), TARGET)
    with pytest.raises(NotFound):
        await t.fetch_instance(ref_of(next(iter(objects.values())), TARGET))
    assert stored.instances == []


async def test_a_protocol_that_cannot_ask_converts_the_stored_form(objects: dict[str, bytes]) -> None:
    stored = Fake(objects)
    t = TranscodingFetcher(stored, None, Converter(), TARGET)
    assert is_target(await t.fetch_instance(ref_of(next(iter(objects.values())), TARGET)))
    assert len(stored.instances) == 1


async def series(t: TranscodingFetcher, objects: dict[str, bytes]) -> dict[str, bytes]:
    ref = ref_of(next(iter(objects.values())), TARGET).series
    return {uid: data async for uid, data in t.fetch_series(ref, sorted(objects))}


async def test_a_series_the_server_will_not_transcode_is_read_as_stored_and_converted(
    objects: dict[str, bytes],
) -> None:
    stored, asking = Fake(objects), Fake(objects, error=Unavailable("HTTP 500", server="pacs"))
    t = TranscodingFetcher(stored, asking, Converter(), TARGET)
    got = await series(t, objects)
    assert set(got) == set(objects) and all(is_target(d) for d in got.values())
    assert (asking.series, stored.series) == (1, 1)
    await series(t, objects)
    assert (asking.series, stored.series) == (1, 2)  # remembered: not asked again


async def test_a_series_that_breaks_after_handing_out_objects_fails(objects: dict[str, bytes]) -> None:
    stored = Fake(objects)
    asking = Fake(objects, syntax=TARGET, error=Unavailable("reset", server="pacs"), fail_after=1)
    t = TranscodingFetcher(stored, asking, Converter(), TARGET)
    got = []
    with pytest.raises(Unavailable):
        async for uid, _ in t.fetch_series(ref_of(next(iter(objects.values())), TARGET).series, sorted(objects)):
            got.append(uid)
    assert len(got) == 1 and stored.series == 0  # the rest is asked for one by one by the Store


async def test_an_object_that_cannot_be_converted_is_left_out_of_the_series(objects: dict[str, bytes]) -> None:
    broken = dict(objects)
    bad = sorted(broken)[1]
    ds = dcmread(io.BytesIO(broken[bad]))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 200])  # a J2K start, then nothing sane
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    broken[bad] = buf.getvalue()
    t = TranscodingFetcher(Fake(broken), None, Converter(), TARGET)
    got = await series(t, broken)
    assert set(got) == set(objects) - {bad}


async def test_the_form_fetcher_dispatches_on_the_form(objects: dict[str, bytes]) -> None:
    stored = Fake(objects)
    t = TranscodingFetcher(stored, None, Converter(), TARGET)
    f = FormFetcher(stored, {TARGET: t})
    data = next(iter(objects.values()))
    assert await f.fetch_instance(ref_of(data)) == data
    assert is_target(await f.fetch_instance(ref_of(data, TARGET)))
    with pytest.raises(RemoteError, match="no fetcher"):
        await f.fetch_instance(ref_of(data, RLELossless))


async def test_both_forms_live_side_by_side_in_the_store(objects: dict[str, bytes]) -> None:
    stored = Fake(objects)
    f = FormFetcher(stored, {TARGET: TranscodingFetcher(stored, None, Converter(), TARGET)})
    data = next(iter(objects.values()))
    as_stored, converted = ref_of(data), ref_of(data, TARGET)
    async with opened(f, readahead="off") as store:  # type: ignore[arg-type]
        a = await store.get("pacs", as_stored)
        b = await store.get("pacs", converted)
        assert a == data and is_target(b) and a != b
        assert store.size_of(as_stored.key) == len(a) and store.size_of(converted.key) == len(b)
        assert converted.key == f"{converted.instance_uid}@{TARGET}"
        assert await store.get("pacs", as_stored) == a and await store.get("pacs", converted) == b
        assert len(stored.instances) == 2  # once per form, then from memory
