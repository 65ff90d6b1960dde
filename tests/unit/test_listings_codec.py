"""Search results as the shared tier stores them: nested results survive the
round trip; a study search's name depends on everything that shapes its
answer and on nothing else; a stored value that is not a result is refused."""

from __future__ import annotations

import datetime as dt

import pytest

from trolleyfs.listings.cluster import FORMAT_HEAD, dump, load
from trolleyfs.listings.codec import decode_instance, decode_series, decode_study
from trolleyfs.listings.identity import search_key, short_name
from trolleyfs.listings.sources import Listed, listing_age
from trolleyfs.model import Instance, Query, QueryLevel, Series, Study


def test_nested_results_come_back_equal() -> None:
    inst = Instance("1.1", "1.1.1", "1.1.1.1", {"InstanceNumber": "1"})
    deep = Study(
        "1.1",
        {"PatientName": "DOE^JANE", "ModalitiesInStudy": "CT\\MR"},
        [Series("1.1", "1.1.1", {"SeriesNumber": "1"}, [inst]), Series("1.1", "1.1.2", {}, None)],
    )
    raw = dump([deep, Study("1.2", {})])
    assert raw.startswith(FORMAT_HEAD)
    assert load(raw, decode_study) == [deep, Study("1.2", {})]
    assert load(dump([inst]), decode_instance) == [inst]
    assert load(dump([Series("1.1", "1.1.1", {"A": "b"})]), decode_series) == [Series("1.1", "1.1.1", {"A": "b"})]


def test_a_stored_value_that_is_not_a_result_is_refused() -> None:
    for raw in (b"", b"[]", b'{"v":1}', b'{"v":1,"items":[{"uid":"1"}]}', b'{"v":1,"items":[1]}'):
        with pytest.raises(ValueError, match="not a stored search result"):
            load(raw, decode_study)


def test_a_study_search_is_named_by_what_shapes_its_answer() -> None:
    q = Query({"PatientName": "DOE*", "ModalitiesInStudy": "CT"}, dt.date(2020, 1, 1), None, ("PatientBirthDate",))
    same = Query({"ModalitiesInStudy": "CT", "PatientName": "DOE*"}, dt.date(2020, 1, 1), None, ("PatientBirthDate",))
    assert short_name(search_key(q)) == short_name(search_key(same))
    others = [
        Query({"PatientName": "DOE*"}, dt.date(2020, 1, 1), None, ("PatientBirthDate",)),
        Query(q.filters, dt.date(2020, 1, 2), None, q.include_fields),
        Query(q.filters, q.min_study_date, None, ()),
        Query(q.filters, q.min_study_date, None, q.include_fields, QueryLevel.SERIES),
        Query(q.filters, q.min_study_date, None, q.include_fields, limit=1),
    ]
    assert len({short_name(search_key(o)) for o in others} | {short_name(search_key(q))}) == len(others) + 1


def test_a_result_carries_its_age() -> None:
    assert listing_age(Listed([1, 2], 12.5)) == 12.5 and Listed([1, 2], 12.5) == [1, 2]
    assert listing_age([1, 2]) == 0.0 and listing_age(Listed([])) == 0.0
