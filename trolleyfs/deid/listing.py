"""The profile applied to a listing's attributes (``{DICOM keyword: string}``,
multi-values joined by backslashes, person names in DICOM form; see
:mod:`trolleyfs.model`), with the same values as the de-identified objects
hold: the same pseudonyms, shifted dates, dummies, cleaned texts and UIDs.

An attribute the profile removes is left out of the result; one it empties
is ``""``.  A keyword that is not in pydicom's dictionary, a sequence, and
an attribute of an overlay or curve group are left out too (nothing here can
judge them).  Attributes that listings carry but objects do not
(NumberOfStudyRelatedSeries, ModalitiesInStudy, ...) are not in the table
and are kept."""

from __future__ import annotations

from collections.abc import Mapping

from pydicom.datadict import tag_for_keyword

from .keyed import Keyed
from .table import Act, Profile, table_vr
from .values import SINGLE_VALUED, STRING_VRS, Subject, string_values
from .walk import NUMBER_VRS, PATIENT_ID, PATIENT_NAME


def listing_subject(keyed: Keyed, study: Mapping[str, str]) -> Subject:
    """The subject of a study, from its listing row (PatientID,
    StudyInstanceUID, PatientName, AccessionNumber)."""
    return Subject.of(
        keyed,
        patient_id=study.get("PatientID"),
        study_uid=study.get("StudyInstanceUID"),
        patient_name=study.get("PatientName"),
        accession=study.get("AccessionNumber"),
    )


def _split(value: str, vr: str) -> list[str]:
    if value == "":
        return []
    return [value] if vr in SINGLE_VALUED else value.split("\\")


def listing_attrs(profile: Profile, keyed: Keyed, subject: Subject, attrs: Mapping[str, str]) -> dict[str, str]:
    """``attrs`` de-identified for ``subject``."""
    out: dict[str, str] = {}
    for keyword, value in attrs.items():
        tag = tag_for_keyword(keyword)
        if tag is None or (tag >> 16) & 1 or (tag >> 16) & 0xFF00 in (0x5000, 0x6000):
            continue
        if tag == PATIENT_ID:
            out[keyword] = subject.patient_id
            continue
        if tag == PATIENT_NAME:
            out[keyword] = subject.patient_name
            continue
        vr = table_vr(tag) or "UN"
        act = profile.action(tag) or Act.KEEP
        if vr == "SQ":
            continue
        if act is Act.KEEP:
            out[keyword] = value
            continue
        if vr not in STRING_VRS:
            if act is Act.EMPTY:
                out[keyword] = ""
            elif act is Act.DUMMY and vr in NUMBER_VRS:
                out[keyword] = "0"
            continue  # otherwise a binary value: removed, or a dummy no listing shows
        new = string_values(act, vr, _split(value, vr), subject, keyed.uid)
        if new is not None:
            out[keyword] = "\\".join(new)
    return out
