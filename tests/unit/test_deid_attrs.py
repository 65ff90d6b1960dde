"""A listing's attributes de-identified (Deidentifier.attrs) say what the
de-identified objects say: every attribute of the study, series and instance
listings (and of include fields) maps to the value the object holds, or is
absent where the object's is removed: names, xattrs and file contents agree."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.multival import MultiValue

from tests.identifying import Study, leaks, make_object
from trolleyfs.deid import Deidentifier

KEY = bytes(range(32))
MODIFIED = "retain-longitudinal-temporal-information-modified-dates"
# the searchers' fields at each level (QIDO-RS, MINT, DICOM-QR) and include fields a config may ask for
LEVELS = {
    "study": (
        "StudyInstanceUID StudyDate StudyTime StudyDescription PatientName PatientID AccessionNumber "
        "ModalitiesInStudy NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances PatientBirthDate PatientSex "
        "InstitutionName ReferringPhysicianName StudyID OtherPatientIDs PatientAge IssuerOfPatientID PatientWeight"
    ),
    "series": (
        "SeriesInstanceUID SeriesNumber Modality SeriesDescription NumberOfSeriesRelatedInstances SeriesDate "
        "SeriesTime StationName ProtocolName OperatorsName PerformedProcedureStepStartDate DeviceSerialNumber"
    ),
    "instance": (
        "SOPInstanceUID SOPClassUID InstanceNumber ContentDate ContentTime AcquisitionDateTime ImageComments "
        "InstanceCreationDate AcquisitionDate FrameOfReferenceUID"
    ),
}
LISTING_ONLY = {"ModalitiesInStudy": "CT", "NumberOfStudyRelatedSeries": "1", "NumberOfStudyRelatedInstances": "2"}
OPTION_SETS = [
    (),
    (MODIFIED,),
    ("clean-descriptors",),
    ("retain-uids", "retain-patient-characteristics", "retain-device-identity", "retain-institution-identity"),
    ("retain-longitudinal-temporal-information-full-dates", "clean-descriptors", "clean-structured-content"),
]


def as_listed(value: Any) -> str:
    """A value as a listing holds it (trolleyfs.model's convention)."""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return str(value)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "+".join(o) or "basic")
def test_every_listing_attribute_maps_as_in_the_objects(options: tuple[str, ...]) -> None:
    study = Study("M", 13)
    data = make_object(study, "CT", 1, 0, 2)
    d = Deidentifier(KEY, options)
    before, after = dcmread(io.BytesIO(data)), dcmread(io.BytesIO(d.part10(data)))
    rows = {
        level: {k: as_listed(before[k].value) for k in keywords.split() if k in before}
        for level, keywords in LEVELS.items()
    }
    rows["study"].update(LISTING_ONLY)
    compared = 0
    for level, row in rows.items():
        mapped = d.attrs(level, row, study=rows["study"])
        for keyword in row:
            if keyword in LISTING_ONLY:
                assert mapped[keyword] == row[keyword]
            elif keyword in after:
                assert mapped.get(keyword) == as_listed(after[keyword].value), (level, keyword)
                compared += 1
            else:
                assert keyword not in mapped, (level, keyword)
        if not options:
            assert leaks(repr(mapped).encode("utf-8"), study.secrets) == []
    assert compared >= 20
    assert d.uid(str(before.StudyInstanceUID)) == after.StudyInstanceUID


def test_a_basic_listing_shows_no_identifying_value() -> None:
    study = Study("N", 14)
    before = dcmread(io.BytesIO(make_object(study, "MR", 1, 0, 1)))
    d = Deidentifier(KEY, [MODIFIED])
    row = {k: as_listed(before[k].value) for k in LEVELS["study"].split() if k in before}
    mapped = d.attrs("study", row)
    for encoding in ("utf-8", "latin-1"):
        assert leaks(repr(mapped).encode(encoding, "replace"), study.secrets, times=False) == []
    assert mapped["PatientName"] == f"ANON^{mapped['PatientID']}"
    assert mapped["AccessionNumber"] == "" and "StudyDescription" not in mapped


def test_series_and_instance_attributes_need_their_study() -> None:
    with pytest.raises(ValueError, match="study"):
        Deidentifier(KEY).attrs("series", {"SeriesDate": "19870304"})


def test_a_study_without_patient_id_is_a_patient_of_its_own_in_files_and_listings() -> None:
    d = Deidentifier(KEY, [MODIFIED])
    study = Study("O", 15, patient_id=" ")
    before = dcmread(io.BytesIO(make_object(study, "CT", 1, 0, 1)))
    after = dcmread(io.BytesIO(d.part10(make_object(study, "CT", 1, 0, 1))))
    row = {"PatientID": "", "StudyInstanceUID": study.uid, "StudyDate": study.date, "PatientName": ""}
    mapped = d.attrs("study", row)
    assert mapped["PatientID"] == after.PatientID and mapped["StudyDate"] == after.StudyDate
    other = d.attrs("study", {**row, "StudyInstanceUID": study.uid + ".2"})
    assert other["PatientID"] != mapped["PatientID"]
    assert before.PatientID.strip() == ""
