"""Names: readable, safe for any filesystem, unique and stable."""

from __future__ import annotations

import pytest

from trolleyfs.naming import check_template, names_for, render, sanitize, unique_names


def test_readable_defaults():
    attrs = {"StudyDate": "20210304", "PatientName": "DOE^JOHN^^^", "StudyDescription": "CT  Chest"}
    assert render("{StudyDate} {PatientName} {StudyDescription}", attrs) == "2021-03-04 DOE JOHN CT Chest"
    assert (
        render("{SeriesNumber:03} {Modality} {SeriesDescription}", {"SeriesNumber": "2", "Modality": "CT"}) == "002 CT"
    )
    assert render("{InstanceNumber:04}", {"InstanceNumber": " 7 "}) == "0007"
    assert render("{InstanceNumber:04}", {"InstanceNumber": "abc"}) == "abc"  # not a number: as is
    assert render("{StudyDate}", {"StudyDate": "13495156"}) == "13495156"  # invalid date: as is


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("a/b", "a_b"),
        ("..", "unnamed"),
        (".hidden", "hidden"),
        ("a\x00b\x1fc\x7f", "a_b_c_"),
        ("  x  ", "x"),
        ("tab\there", "tab_here"),
        ("back\\slash", "back_slash"),
        ("", "unnamed"),
    ],
)
def test_sanitize(raw, safe):
    assert sanitize(raw) == safe


def test_long_names_are_cut_at_255_bytes_on_a_character_boundary():
    name = sanitize("é" * 300, ".dcm")
    assert len(name.encode()) <= 255 and name.endswith(".dcm")
    name.encode("utf-8")  # still valid UTF-8


def test_non_utf8_values_still_give_names():
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")
    name = sanitize(bad)
    name.encode("utf-8")
    assert name.startswith("caf")


def test_collisions_get_stable_suffixes():
    items = [("002 CT Bone", "1.2.3"), ("002 CT Bone", "1.2.4"), ("003 CT", "1.2.5")]
    names = unique_names(items)
    assert len(set(names)) == 3 and names[2] == "003 CT"
    assert names[0].startswith("002 CT Bone ~") and names[0] != names[1]
    # order-independent: the same object gets the same name
    assert unique_names(list(reversed(items))) == list(reversed(names))
    # the suffix goes before the extension
    files = unique_names([("0001", "1.1"), ("0001", "1.2")], ".dcm")
    assert all(f.endswith(".dcm") and " ~" in f for f in files)


def test_case_insensitive_collisions_and_duplicate_uids():
    names = unique_names([("Ab", "1"), ("aB", "2"), ("x", "3"), ("x", "3")])
    assert len({n.casefold() for n in names}) == 4


def test_missing_values_fall_back_to_uid():
    (name,) = names_for("{SeriesDescription}", [({}, "1.2.840.1")])
    assert name == "1.2.840.1"


@pytest.mark.parametrize("bad", ["{}", "{0}", "{Nope}", "{PatientName", "plain text"])
def test_bad_templates(bad):
    with pytest.raises(ValueError, match="template"):
        check_template(bad)
