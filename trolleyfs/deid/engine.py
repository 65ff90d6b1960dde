"""The de-identifier the read path and the tree call: one object per mount,
made from the key and the options, without state, safe to use from several
worker threads at once.

- :meth:`Deidentifier.part10`: a Part-10 object in, the de-identified object
  out (pixel data and transfer syntax unchanged; deterministic bytes);
- :meth:`Deidentifier.excluded`: why an object must be left out, if it must;
- :meth:`Deidentifier.attrs`: a listing's attributes with the same values as
  the objects hold; :meth:`Deidentifier.uid`: the new UID of a UID;
- :meth:`Deidentifier.dataset`: the same rules applied to a pydicom Dataset
  in place (for views that build datasets of their own).

Every call is CPU work (pydicom): the read path runs it in a worker thread."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydicom.dataset import Dataset

from ..model import QueryLevel
from .codec import file_meta, read, write
from .errors import DeidError, Excluded
from .exclusion import dataset_exclusion, exclusion_reason
from .keyed import Keyed
from .listing import listing_attrs, listing_subject
from .method import record
from .options import Option, parse_options
from .table import profile
from .values import Subject
from .walk import Walker, strings


def _text(ds: Dataset, keyword: str) -> str:
    values = strings(ds.get(keyword))
    return "\\".join(values)


def dataset_subject(keyed: Keyed, ds: Dataset) -> Subject:
    """The subject of an object, from its own (original) attributes."""
    return Subject.of(
        keyed,
        patient_id=_text(ds, "PatientID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        patient_name=_text(ds, "PatientName"),
        accession=_text(ds, "AccessionNumber"),
    )


ETHICS_COMMITTEE_NAME = 0x00120081  # Clinical Trial Protocol Ethics Committee Name
ETHICS_APPROVAL_NUMBER = 0x00120082  # Clinical Trial Protocol Ethics Committee Approval Number


class Deidentifier:
    """PS3.15 Annex E's Basic Application Level Confidentiality Profile with
    ``options``, keyed by ``key`` (32 bytes or more).  ``options`` are
    :class:`~.options.Option` values or their names.  With
    ``include_burned_in``, instances that :mod:`.exclusion` would leave out
    are served too."""

    def __init__(self, key: bytes, options: Iterable[Option | str] = (), *, include_burned_in: bool = False) -> None:
        self._keyed = Keyed(key)
        given = list(options)
        self.options = frozenset(o for o in given if isinstance(o, Option)) | parse_options(
            o for o in given if isinstance(o, str)
        )
        parse_options(o.value for o in self.options)  # the temporal options exclude each other
        self.include_burned_in = include_burned_in
        self._profile = profile(self.options)
        self.form = self._keyed.form(",".join(sorted(o.value for o in self.options)))
        """A name for this form of the objects (key, options and rules), for cache keys."""

    def __repr__(self) -> str:
        names = ", ".join(sorted(o.value for o in self.options)) or "basic profile"
        return f"Deidentifier({names}; {self.form})"

    def uid(self, original: str) -> str:
        """The UID that a Study, Series or SOP Instance UID (or any UID the
        Retain UIDs option keeps) becomes: its keyed new UID, or itself with
        that option.  (The few UIDs the table replaces even with the option,
        such as Digital Signature UID, always get the keyed UID.)"""
        if Option.RETAIN_UIDS in self.options:
            return original
        return self._keyed.uid(original)

    def dataset(self, ds: Dataset) -> Dataset:
        """``ds`` de-identified in place (not its file meta), and returned."""
        Walker(self._profile, self._keyed, dataset_subject(self._keyed, ds)).walk(ds)
        if ETHICS_COMMITTEE_NAME in ds and ETHICS_APPROVAL_NUMBER not in ds:
            # Table E.1-1 dummies the committee's name (D) but removes the approval
            # number (X) its Type 1C condition depends on: the name goes too, so
            # the object stays as valid as its source (dciodvfy finds no new error)
            del ds[ETHICS_COMMITTEE_NAME]
        record(ds, self.options)
        return ds

    def excluded(self, data: bytes | Dataset) -> str | None:
        """Why the object (Part-10 bytes or a dataset) must be left out; None
        if it may be served (always None with ``include_burned_in``)."""
        ds = read(data) if isinstance(data, bytes | bytearray | memoryview) else data
        return None if self.include_burned_in else dataset_exclusion(ds)

    def excluded_attrs(self, attrs: Mapping[str, str]) -> str | None:
        """The same decision from an instance's listing attributes (with the
        series' Modality): see :data:`.exclusion.LISTING_FIELDS`."""
        return None if self.include_burned_in else exclusion_reason(attrs)

    def part10(self, data: bytes) -> bytes:
        """The de-identified Part-10 object.  DeidError if ``data`` cannot be
        read or de-identified; Excluded if it must be left out."""
        ds = read(bytes(data))
        if not self.include_burned_in and (reason := dataset_exclusion(ds)) is not None:
            raise Excluded(f"left out of the de-identified mount: {reason}")
        try:
            meta = ds.file_meta
            syntax = str(meta.TransferSyntaxUID)
            sop_class = _text(ds, "SOPClassUID") or str(meta.get("MediaStorageSOPClassUID", ""))
            old_instance = str(meta.get("MediaStorageSOPInstanceUID", ""))
            self.dataset(ds)
            sop_instance = _text(ds, "SOPInstanceUID") or self.uid(old_instance)
            ds.file_meta = file_meta(sop_class, sop_instance, syntax)
            return write(ds)
        except Exception as exc:  # broken values surface only when read
            raise DeidError(f"cannot de-identify the object: {type(exc).__name__}: {exc}") from None

    def attrs(
        self, level: QueryLevel | str, attrs: Mapping[str, str], study: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """A listing's attributes de-identified as the objects are.  For the
        series and instance levels, ``study`` is the (original) listing row
        of their study, which holds the patient: PatientID, StudyInstanceUID,
        PatientName, AccessionNumber."""
        if QueryLevel(level) is QueryLevel.STUDY:
            study = attrs if study is None else study
        elif study is None:
            raise ValueError("series and instance attributes need their study's attributes")
        return listing_attrs(self._profile, self._keyed, listing_subject(self._keyed, study), attrs)
