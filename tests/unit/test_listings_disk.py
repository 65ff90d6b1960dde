"""Listings kept in the disk cache (the offline half of it), without a kernel:
what is written and read back, when a kept listing is used instead of asking
(younger than its TTL; the server unreachable), when it is not (other
errors), the 30 s during which an unreachable server is not asked, and what
the disk cache of objects leaves alone.  Virtual time for the mount's clock,
a shifted wall clock for the listings' ages."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
import trio

from tests.fakes.tree import FakeSearcher
from trolleyfs.endpoints import Server
from trolleyfs.errors import AccessDenied, NotFound, Unavailable
from trolleyfs.listings.codec import decode_study, encode
from trolleyfs.listings.disk import LISTINGS_DIR, SavedListings, holds
from trolleyfs.listings.identity import search_key as query_key
from trolleyfs.listings.identity import server_identity
from trolleyfs.listings.sources import OFFLINE_RETRY_S, Listings
from trolleyfs.listings.ttls import ListingTTLs
from trolleyfs.model import Instance, Query, Series, Study
from trolleyfs.protocols import endpoint
from trolleyfs.read.disk import DiskCache
from trolleyfs.stats import Stats

TTLS = ListingTTLs(studies=60.0, series=300.0, instances=3600.0)


def test_a_study_with_its_series_and_instances_survives_the_round_trip(tmp_path) -> None:
    inst = Instance("1", "1.1", "1.1.1", {"InstanceNumber": "1"})
    study = Study(
        "1",
        {"PatientName": "DOE^J\\X", "StudyDate": "20240101"},
        [Series("1", "1.1", {"Modality": "CT"}, [inst]), Series("1", "1.2", {}, None)],
    )
    saved = SavedListings(str(tmp_path))
    saved.save("pacs", "k", [study, Study("2")])
    assert saved.load("pacs", "k", decode_study) == [study, Study("2")]
    assert saved.load("pacs", "other key", decode_study) is None
    assert saved.load("other server", "k", decode_study) is None
    assert decode_study(encode(study)) == study
    assert holds(str(tmp_path), "pacs") and not holds(str(tmp_path), "other server")
    assert not holds(str(tmp_path / "nowhere"), "pacs")


def test_a_damaged_or_foreign_file_is_a_miss(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    saved = SavedListings(str(tmp_path))
    saved.save("pacs", "k", [Study("1")])
    (path,) = (tmp_path / LISTINGS_DIR / "i-pacs").iterdir()
    path.write_text('{"format": 1, "key": "k", "items": [{"uid": 5, "attrs": {}}]}')
    assert saved.load("pacs", "k", decode_study) is None
    assert not path.exists() and "unreadable" in caplog.text  # dropped, said once
    saved.save("pacs", "k", [Study("1")])
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(doc | {"key": "another key with the same hash"}))
    assert saved.load("pacs", "k", decode_study) is None and path.exists()  # not ours: left alone
    path.write_text(json.dumps(doc | {"format": 99}))
    assert saved.load("pacs", "k", decode_study) is None


def test_unfinished_writes_and_the_oldest_listings_beyond_the_limit_go_at_start(tmp_path) -> None:
    saved = SavedListings(str(tmp_path))
    for i in range(5):
        saved.save("pacs", f"k{i}", [Study(str(i))])
        os.utime(saved._path("pacs", f"k{i}"), (1000 + i, 1000 + i))
    (saved._path("pacs", "k0").parent / "x.json.tmp123.4").write_text("{")
    again = SavedListings(str(tmp_path), max_files=3)
    assert [again.load("pacs", f"k{i}", decode_study) is not None for i in range(5)] == [False, False, True, True, True]
    assert not any(".tmp" in p.name for p in saved._path("pacs", "k0").parent.iterdir())


def test_the_disk_cache_of_objects_leaves_the_listings_alone(tmp_path) -> None:
    saved = SavedListings(str(tmp_path))
    saved.save("pacs", "k", [Study("1")])
    disk = DiskCache(str(tmp_path), 10 * 2**20)
    disk.put("1.2.3", b"x" * 100)
    again = DiskCache(str(tmp_path), 10 * 2**20)  # its start-up scan
    assert again.bytes_used == 100 + DiskCache.SUFFIX_LEN
    assert saved.load("pacs", "k", decode_study) == [Study("1")]


# ------------------------------------------------------------------ Listings over kept results


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def listings(pacs: FakeSearcher, tmp_path, clock: Clock, stats: Stats | None = None) -> Listings:
    return Listings({"pacs": pacs}, stats or Stats(), SavedListings(str(tmp_path)), TTLS, clock)


async def test_a_kept_listing_younger_than_its_ttl_answers_after_a_remount(tmp_path) -> None:
    pacs, clock = FakeSearcher({"1.1": {"1.1.1": 2}}), Clock()
    first = listings(pacs, tmp_path, clock)
    studies = await first.find_studies("pacs", Query(filters={"PatientName": "DOE*"}))
    series = await first.find_series("pacs", "1.1")
    instances = await first.find_instances("pacs", "1.1", "1.1.1")
    assert pacs.calls == {"studies": 1, "series": 1, "instances": 1}
    stats = Stats()
    again = listings(pacs, tmp_path, clock, stats)  # a remount
    clock.offset = 59
    assert await again.find_studies("pacs", Query(filters={"PatientName": "DOE*"})) == studies
    assert await again.find_series("pacs", "1.1") == series
    assert await again.find_instances("pacs", "1.1", "1.1.1") == instances
    assert pacs.calls == {"studies": 1, "series": 1, "instances": 1} and sum(stats.requests.values()) == 0
    clock.offset = 61  # the study list is stale now, the series and instance lists are not
    await again.find_studies("pacs", Query(filters={"PatientName": "DOE*"}))
    await again.find_series("pacs", "1.1")
    assert pacs.calls == {"studies": 2, "series": 1, "instances": 1} and stats.requests == {"pacs": 1}
    await again.find_studies("pacs", Query(filters={"PatientName": "OTHER*"}))
    assert pacs.calls["studies"] == 3  # another query, another listing


async def test_an_unreachable_server_is_answered_from_the_disk_and_not_asked_for_a_while(
    tmp_path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trolleyfs.listings")
    pacs, clock = FakeSearcher({"1.1": {"1.1.1": 2}}), Clock()
    online = listings(pacs, tmp_path, clock)
    series = await online.find_series("pacs", "1.1")
    studies = await online.find_studies("pacs", Query())
    clock.offset = 10 * 86400  # days later, the server down
    pacs.fail = Unavailable("cannot connect", server="pacs")
    offline = listings(pacs, tmp_path, clock)
    assert await offline.find_series("pacs", "1.1") == series
    assert pacs.calls["series"] == 2  # asked once, then served from the disk
    assert await offline.find_studies("pacs", Query()) == studies
    assert pacs.calls["studies"] == 1  # not asked again while it is known to be down
    assert caplog.text.count("is unreachable") == 1
    with pytest.raises(Unavailable):
        await offline.find_instances("pacs", "1.1", "1.1.1")  # never listed: nothing to serve
    await trio.sleep(OFFLINE_RETRY_S + 1)
    pacs.fail = None
    await offline.find_studies("pacs", Query())
    assert pacs.calls["studies"] == 2  # asked again after a while; it answers
    assert "answers again" in caplog.text


async def test_the_offline_reason_every_reader_sees_names_no_uid(tmp_path) -> None:
    """stats.json shows why a server is served offline: the cause, never what
    was being asked (``series of study <UID>``: on a de-identified mount an
    original UID) nor what the server wrote back."""
    pacs, clock = FakeSearcher({"1.1": {"1.1.1": 2}}), Clock()
    await listings(pacs, tmp_path, clock).find_series("pacs", "1.1")
    clock.offset = 1000
    for fail, reason in (
        (
            Unavailable("cannot connect: [Errno 111] Connection refused", server="pacs", what="series of study 1.1"),
            None,
        ),
        (
            Unavailable(
                "HTTP 503 Service Unavailable: study 1.1 is offline", server="pacs", what="series of study 1.1"
            ),
            503,
        ),
    ):
        fail.http_status = reason
        pacs.fail = fail
        stats = Stats()
        await listings(pacs, tmp_path, clock, stats).find_series("pacs", "1.1")
        shown = stats.offline["pacs"].reason
        assert "1.1" not in shown and shown == (fail.message if reason is None else "HTTP 503"), shown


@pytest.mark.parametrize("error", [NotFound("gone", server="pacs"), AccessDenied("who are you", server="pacs")])
async def test_only_an_unreachable_server_is_covered_by_the_disk(tmp_path, error: Exception) -> None:
    pacs, clock = FakeSearcher({"1.1": {"1.1.1": 2}}), Clock()
    await listings(pacs, tmp_path, clock).find_series("pacs", "1.1")
    clock.offset = 1000
    pacs.fail = error  # type: ignore[assignment]
    with pytest.raises(type(error)):
        await listings(pacs, tmp_path, clock).find_series("pacs", "1.1")


async def test_without_a_disk_cache_every_listing_asks(tmp_path) -> None:
    pacs = FakeSearcher({"1.1": {}})
    bare = Listings({"pacs": pacs}, Stats(), None, TTLS)
    await bare.find_series("pacs", "1.1")
    await bare.find_series("pacs", "1.1")
    assert pacs.calls["series"] == 2
    pacs.fail = Unavailable("down", server="pacs")
    with pytest.raises(Unavailable):
        await bare.find_series("pacs", "1.1")
    assert not bare.holds_saved("pacs")


def test_a_folder_key_keeps_relative_dates_as_written() -> None:
    import datetime

    monday = Query(min_study_date=datetime.date(2024, 1, 1))
    tuesday = Query(min_study_date=datetime.date(2024, 1, 2))
    assert query_key(monday, "-7d", "") == query_key(tuesday, "-7d", "")  # found again on another day
    assert query_key(monday) != query_key(tuesday)
    assert query_key(Query(filters={"A": "1", "B": "2"})) == query_key(Query(filters={"B": "2", "A": "1"}))


def test_listings_kept_under_a_server_name_by_an_earlier_version_are_dropped(tmp_path) -> None:
    """Earlier versions kept listings by the server's name in the config: a
    name pointed at another archive would have found them.  They go at start."""
    old = tmp_path / LISTINGS_DIR / "s-pacs"
    old.mkdir(parents=True)
    (old / "0123.json").write_text('{"format": 1, "key": "k", "items": []}')
    saved = SavedListings(str(tmp_path))
    assert not old.exists() and not saved.holds("pacs") and not holds(str(tmp_path), "pacs")


def test_a_server_is_known_by_what_it_is_not_by_its_name() -> None:
    def server(name: str, url: str, protocol: str = "qido-rs", **extra: object) -> Server:
        ep = endpoint(protocol, url=url, **extra)
        return Server(name, ep, endpoint("wado-rs", url="http://pacs/wado"))

    same = [
        server("pacs", "http://PACS:80/dicom-web/"),
        server("renamed", "http://pacs/dicom-web"),
        server("pacs", "http://pacs/dicom-web", page_size=10),  # shapes requests, not the archive
    ]
    assert len({server_identity(s) for s in same}) == 1
    others = [
        server("pacs", "http://pacs:8042/dicom-web"),  # a mistyped port
        server("pacs", "https://pacs/dicom-web"),
        server("pacs", "http://other/dicom-web"),
        server("pacs", "http://pacs/dicom-web", "mint"),
    ]
    assert len({server_identity(s) for s in [same[0], *others]}) == len(others) + 1
