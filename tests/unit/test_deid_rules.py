"""Every attribute of PS3.15 Table E.1-1 gets the action the standard gives it,
under the basic profile and under each option (the expectations are read
from the shipped table here, column by column); dates shift by one offset
per patient with the modified-dates option, so intervals survive; clean
descriptors keep descriptions without the patient's identifiers."""

from __future__ import annotations

import datetime as _dt
import io
import json
from importlib import resources
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.identifying import Study, leaks, make_object, table_tags
from trolleyfs.deid import Deidentifier
from trolleyfs.deid.engine import ETHICS_APPROVAL_NUMBER, ETHICS_COMMITTEE_NAME

KEY = bytes(range(32))
MODIFIED = "retain-longitudinal-temporal-information-modified-dates"
FULL = "retain-longitudinal-temporal-information-full-dates"
# the options by their names in the config, and their columns in the standard's table
COLUMNS = {
    "retain-safe-private": "rtnSafePrivOpt",
    "retain-uids": "rtnUIDsOpt",
    "retain-device-identity": "rtnDevIdOpt",
    "retain-institution-identity": "rtnInstIdOpt",
    "retain-patient-characteristics": "rtnPatCharsOpt",
    FULL: "rtnLongFullDatesOpt",
    MODIFIED: "rtnLongModifDatesOpt",
    "clean-descriptors": "cleanDescOpt",
    "clean-structured-content": "cleanStructContOpt",
    "clean-graphics": "cleanGraphOpt",
}
OPTION_SETS = [(), *((o,) for o in COLUMNS), tuple(o for o in COLUMNS if o != FULL)]
PATIENT = (0x00100010, 0x00100020)
DATES = ("DA", "DT", "TM")


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def header() -> list[str]:
    text = resources.files("trolleyfs.deid").joinpath("data", "annex_e.json").read_text(encoding="utf-8")
    return list(json.loads(text)["columns"])


def expectation(row: list[Any], options: tuple[str, ...], vr: str) -> str:
    """What the standard asks for this row (choices taken as the engine
    documents: D over Z over X, K over C, dates shifted with the option)."""
    cells = dict(zip(header(), row, strict=True))
    said = {o: cells[COLUMNS[o]] for o in options if cells[COLUMNS[o]]}
    if said.get(MODIFIED) == "C":
        if vr in DATES:
            return "shifted"
        del said[MODIFIED]  # not a date: the basic profile's action stays
    if "K" in said.values():
        return "kept"
    if "C" in said.values():
        return "cleaned"
    basic = cells["basicProfile"].split("/")
    if basic == ["X", "Z", "U*"]:
        return "walked"
    for letter, what in (("D", "dummy"), ("Z", "empty"), ("X", "absent"), ("U", "uid")):
        if letter in basic:
            return what
    raise AssertionError(row)


def date_of(value: str) -> _dt.date:
    return _dt.datetime.strptime(value[:8], "%Y%m%d").date()


def tokens(study: Study) -> list[str]:
    """What cleaning takes out of a text: the patient's name parts, ID and accession number."""
    return [*study.patient_name.split("^"), study.patient_id, study.accession]


def check(
    tag: int, what: str, before: Dataset, after: Dataset, d: Deidentifier, shift: int | None, patient: list[str]
) -> None:
    old = before[tag]
    vr, value = old.VR, old.value
    if what == "absent" or (what == "cleaned" and vr in ("OB", "UN")):  # a binary value cannot be cleaned
        assert tag not in after
        return
    new = after[tag].value
    if vr == "SQ":
        assert len(new) == len(value)  # items kept (walked, dummied or cleaned inside)
    elif what == "kept":
        assert new == value
    elif what == "empty":
        assert new in ("", None, b"")
    elif what in ("dummy", "uid") and vr == "UI":
        assert new == Deidentifier(KEY).uid(value)  # the keyed UID, whatever the options
    elif what == "dummy":
        assert new not in ("", None, b"") and new != value
    elif what == "shifted":
        assert shift is not None
        if vr == "TM":
            assert new == value  # whole days: times of day stay
        else:
            assert (date_of(value) - date_of(new)).days == shift and new[8:] == value[8:]
    else:
        assert what == "cleaned"
        assert not [t for t in patient if t in str(new)]
        if not [t for t in patient if t in str(value)]:
            assert new == value
        else:
            assert new != value and "*" in str(new)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "+".join(o) or "basic")
def test_every_attribute_of_the_table_gets_its_action(options: tuple[str, ...]) -> None:
    study = Study("G", 7)
    data = make_object(study, "CT", 1, 0, 2)
    d = Deidentifier(KEY, options)
    before, after = read(data), read(d.part10(data))
    shift = (date_of(before.StudyDate) - date_of(after.StudyDate)).days if MODIFIED in options else None
    if shift is not None:
        assert 365 <= shift <= 3652
    checked = 0
    for tag, row in table_tags().items():
        if tag in before and tag == ETHICS_COMMITTEE_NAME and ETHICS_APPROVAL_NUMBER not in after:
            assert tag not in after  # a dummy without the number its Type 1C condition needs: removed
            checked += 1
        elif tag in before and tag not in PATIENT:
            what = expectation(row, options, before[tag].VR)
            try:
                check(tag, what, before, after, d, shift, tokens(study))
            except (AssertionError, KeyError) as exc:
                raise AssertionError(
                    f"{row[0]} {row[1]}: expected {what}; {before[tag]!r} -> {after.get(tag)!r}"
                ) from exc
            checked += 1
    assert checked >= 590  # every row in pydicom's dictionary, but the command and file meta ones


def test_with_modified_dates_a_patient_keeps_the_intervals_between_studies() -> None:
    d = Deidentifier(KEY, [MODIFIED])
    first = Study("H", 8, date="19870304")
    later = Study("I", 9, date="19880917", patient_id=first.patient_id)
    someone = Study("J", 10, date="19870304")
    a, b, c = (read(d.part10(make_object(s, "MR", 1, 0, 1))) for s in (first, later, someone))
    assert (date_of(b.StudyDate) - date_of(a.StudyDate)) == (_dt.date(1988, 9, 17) - _dt.date(1987, 3, 4))
    assert a.StudyDate != c.StudyDate  # another patient, another shift
    assert a.StudyTime == read(make_object(first, "MR", 1, 0, 1)).StudyTime
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    for study in (first, later, someone):
        assert leaks(d.part10(make_object(study, "MR", 1, 0, 1)), study.secrets, times=False) == []


def test_with_full_dates_dates_are_kept() -> None:
    study = Study("K", 11)
    data = make_object(study, "CT", 1, 0, 1)
    out = read(Deidentifier(KEY, [FULL]).part10(data))
    assert out.StudyDate == study.date and out.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_clean_descriptors_keep_descriptions_without_the_patients_identifiers() -> None:
    study = Study("L", 12)
    data = make_object(study, "CT", 1, 0, 1)
    out = read(Deidentifier(KEY, ["clean-descriptors"]).part10(data))
    assert out.StudyDescription == "CT chest of *^*"  # "CT chest of <patient's name>" in the source
    assert out.ImageComments == "Images of *^*, *, accession *"
    assert "StudyDescription" not in read(Deidentifier(KEY).part10(data))
