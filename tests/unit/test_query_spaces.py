"""How a space in a query value is sent and checked (issue 18, item 5; the
real Orthanc is asked in tests/integration/test_spaces.py)."""

from __future__ import annotations

from trolleyfs.search.fields import spaced


def test_auto_sends_a_wildcard_where_the_attribute_takes_one_and_keeps_exact_matches() -> None:
    q = spaced({"StudyDescription": "CT Chest", "PatientName": "VAN DER*", "ModalitiesInStudy": "CT"})
    assert q.filters == {"StudyDescription": "CT*Chest", "PatientName": "VAN*DER*", "ModalitiesInStudy": "CT"}
    assert set(q.checks) == {"StudyDescription", "PatientName"}
    assert q.keeps({"StudyDescription": "CT Chest", "PatientName": "VAN DER BERG^JAN"})
    assert q.keeps({"StudyDescription": "ct chest", "PatientName": "van der berg"})  # case: the server's business
    assert not q.keeps({"StudyDescription": "CT-Chest", "PatientName": "VAN DER BERG"})
    assert not q.keeps({"StudyDescription": "CT Chest", "PatientName": "VAN-DER BERG"})
    assert not q.keeps({"StudyDescription": "CT Chest Abdomen", "PatientName": "VAN DER"})  # the whole value
    assert q.keeps({"PatientName": "VAN DER"})  # a result without the attribute: nothing to judge by
    assert q.keeps({"StudyDescription": "MR Knee\\CT Chest", "PatientName": "VAN DER"})  # any of several values


def test_the_users_own_wildcards_are_taken_as_the_server_takes_them() -> None:
    q = spaced({"StudyDescription": "CT ?hest*"})
    assert q.filters == {"StudyDescription": "CT*?hest*"}
    assert q.keeps({"StudyDescription": "CT Chest 2 mm"}) and not q.keeps({"StudyDescription": "CTxChest"})


def test_no_wildcard_where_matching_takes_none_and_the_overrides() -> None:
    assert spaced({"StudyDate": "20200101 "}).filters == {"StudyDate": "20200101 "}  # a date: sent as it is
    assert spaced({"StudyDescription": "CT Chest"}, "%20").checks == {}
    q = spaced({"StudyDescription": "CT Chest"}, "?")
    assert q.filters == {"StudyDescription": "CT?Chest"} and not q.keeps({"StudyDescription": "CT-Chest"})
    assert spaced({"StudyDescription": "CTChest"}).checks == {}  # no space, nothing to check
