"""What cannot be made safe is not served: burned-in annotation, the classes
and modalities where text on the pixels is common (unless they say NO),
photographs and surface models (unless they say no face), overlays inside
the pixel data; an admin's include_burned_in serves them.  A listing with
the same attributes gets the same answer as the object."""

from __future__ import annotations

import errno
import io
from collections.abc import Callable

import pytest
from pydicom import dcmread
from pydicom.uid import UID

from tests.identifying import Study, make_object
from trolleyfs.deid import LISTING_FIELDS, Deidentifier, Excluded
from trolleyfs.deid.exclusion import FACE_CLASSES, SCREEN_CLASSES

KEY = bytes(range(32))
SC, US, PHOTO, CT = (
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.6.1",
    "1.2.840.10008.5.1.4.1.1.77.1.4",
    "1.2.840.10008.5.1.4.1.1.2",
)


def an_object(sop_class: str = CT, modality: str = "CT", **flags: str) -> bytes:
    ds = dcmread(io.BytesIO(make_object(Study("P", 16), "CT", 1, 0, 1, every_attribute=False)))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.Modality = modality
    for keyword, value in flags.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


CASES = [
    ("ct", an_object, {}, None),
    ("ct burned in", an_object, {"BurnedInAnnotation": "YES"}, "Burned In Annotation is YES"),
    ("ct with a face", an_object, {"RecognizableVisualFeatures": "YES"}, "Recognizable Visual Features is YES"),
    ("secondary capture", lambda **f: an_object(SC, "OT", **f), {}, "Secondary Capture Image Storage"),
    ("secondary capture, no text", lambda **f: an_object(SC, "CT", **f), {"BurnedInAnnotation": "NO"}, None),
    ("ultrasound", lambda **f: an_object(US, "US", **f), {}, "Ultrasound Image Storage"),
    ("ultrasound, no text", lambda **f: an_object(US, "US", **f), {"BurnedInAnnotation": "NO"}, None),
    ("photograph, no text", lambda **f: an_object(PHOTO, "XC", **f), {"BurnedInAnnotation": "NO"}, "face"),
    (
        "photograph, no text, no face",
        lambda **f: an_object(PHOTO, "XC", **f),
        {"BurnedInAnnotation": "NO", "RecognizableVisualFeatures": "NO"},
        None,
    ),
    ("endoscopy as CT class", lambda **f: an_object(CT, "ES", **f), {}, "modality ES"),
    ("screenshot as CT class", lambda **f: an_object(CT, "OT", **f), {"BurnedInAnnotation": "no "}, None),
]


@pytest.mark.parametrize(("make", "flags", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_instances_that_may_show_identity_are_left_out(
    make: Callable[..., bytes], flags: dict[str, str], reason: str | None
) -> None:
    data = make(**flags)
    d = Deidentifier(KEY)
    said = d.excluded(data)
    ds = dcmread(io.BytesIO(data))
    listed = d.excluded_attrs({k: str(ds.get(k, "")) for k in LISTING_FIELDS})
    assert said == listed
    if reason is None:
        assert said is None
        assert dcmread(io.BytesIO(d.part10(data))).PatientIdentityRemoved == "YES"
    else:
        assert said is not None and reason in said
        with pytest.raises(Excluded) as info:
            d.part10(data)
        assert info.value.errno == errno.ENOENT and reason in str(info.value)
        admin = Deidentifier(KEY, include_burned_in=True)
        assert admin.excluded(data) is None
        assert dcmread(io.BytesIO(admin.part10(data))).PatientIdentityRemoved == "YES"


def test_an_overlay_inside_the_pixel_data_is_left_out() -> None:
    ds = dcmread(io.BytesIO(an_object()))
    ds.add_new(0x60000010, "US", ds.Rows)
    ds.add_new(0x60000011, "US", ds.Columns)
    ds.add_new(0x60000100, "US", 16)
    ds.add_new(0x60000102, "US", 15)  # in the pixel data's high bit
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert "(6000,xxxx)" in (Deidentifier(KEY).excluded(out.getvalue()) or "")


def test_the_listed_classes_are_storage_classes_pydicom_knows() -> None:
    assert len(SCREEN_CLASSES) >= 25 and FACE_CLASSES
    for uid in SCREEN_CLASSES | FACE_CLASSES:
        assert "Storage" in UID(uid).name, uid
