"""What the tree shows of what it lists.  The tree keeps the objects as the
server listed them (it fetches by their UIDs) and asks its presenter, one
collaborator handed in by the composition root, for everything a user sees:
the UIDs and attributes that names, mtimes and xattrs are made of, which
instances are served, the form files are read in, and which study a UID
typed into ``by-uid/`` names.

- :class:`Presenter` shows everything as listed (a mount without
  ``[deidentify]``).
- :class:`DeidPresenter` (a mount with ``[deidentify]``) shows the values the
  de-identified objects hold (:meth:`trolleyfs.deid.Deidentifier.attrs`, new
  UIDs, pseudonyms, shifted or removed dates), serves the files in the
  de-identified form, leaves out the instances that cannot be made safe (by
  their listing's attributes, or once a read found them out), and finds a
  study by its new Study Instance UID among those the mount has shown.  A new
  UID the mount has not shown yet names nothing: it cannot be turned back
  into the original (that is the point of a keyed hash), so ``by-uid/`` of it
  is ENOENT, without a request.  Listing attributes that objects do not
  carry, and so the profile's table does not name, are shown as the profile
  leaves them (counts, modalities in a study), except URLs (VR UR, such as
  QIDO-RS's Retrieve URL): they are made of the original UIDs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import cachetools
from pydicom.datadict import dictionary_VR, tag_for_keyword

from ..deid import Deidentifier, Option
from ..model import Instance, QueryLevel, Series, Study
from ..read.convert.deidentify import ExcludedInstances, deid_form

STUDIES_REMEMBERED = 200_000  # new Study Instance UIDs -> originals, for by-uid/


@dataclass(frozen=True)
class Shown:
    """An object as the tree shows it: its UID and its attributes."""

    uid: str
    attrs: Mapping[str, str]


class Presenter:
    """Everything shown as listed."""

    filters_series = False  # whether a study's series are checked for served instances (costs their listings)
    lists_lookups = True  # whether by-accession/, by-patient/ and query/ list the names looked up in them

    def form(self, syntax: str) -> str:
        """The form files are read in, for a folder's transfer syntax ("": as stored)."""
        return syntax

    def uid(self, uid: str) -> str:
        """A study, series or instance UID as shown."""
        return uid

    def study(self, study: Study) -> Shown:
        return Shown(study.uid, study.attrs)

    def series(self, series: Series, study: Study) -> Shown:
        return Shown(series.uid, series.attrs)

    def instance(self, instance: Instance, series: Series, study: Study) -> Shown:
        return Shown(instance.uid, instance.attrs)

    def serves(self, instance: Instance, series: Series) -> bool:
        """Whether the instance is shown at all."""
        return True

    @property
    def generation(self) -> int:
        """Changes when an instance listed before is found not to be served."""
        return 0

    def study_of(self, shown_uid: str) -> str | None:
        """The listed Study Instance UID that ``shown_uid`` shows, if known."""
        return shown_uid


def _study_row(study: Study) -> dict[str, str]:
    """A study's listing row with its UID (the subject of its de-identification)."""
    return {**study.attrs, "StudyInstanceUID": study.uid}


@cache
def _is_url(keyword: str) -> bool:
    tag = tag_for_keyword(keyword)
    try:
        return tag is not None and dictionary_VR(tag) == "UR"
    except KeyError:
        return False


def _no_urls(attrs: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in attrs.items() if not _is_url(k)}


class DeidPresenter(Presenter):
    """Everything shown de-identified by ``deid``; ``excluded`` holds the
    instances found to be left out when read."""

    filters_series = True
    # the accession numbers, patient IDs and queries a user typed are real
    # values: listing them would show one user's to every other reader
    lists_lookups = False

    def __init__(self, deid: Deidentifier, excluded: ExcludedInstances, remembered: int = STUDIES_REMEMBERED) -> None:
        self._deid = deid
        self._excluded = excluded
        self._studies: cachetools.LRUCache[str, str] = cachetools.LRUCache(remembered)
        self._same_uids = Option.RETAIN_UIDS in deid.options

    def form(self, syntax: str) -> str:
        return deid_form(self._deid.form, syntax)

    def uid(self, uid: str) -> str:
        return self._deid.uid(uid)

    def study(self, study: Study) -> Shown:
        shown = self._deid.uid(study.uid)
        self._studies[shown] = study.uid
        return Shown(shown, _no_urls(self._deid.attrs(QueryLevel.STUDY, _study_row(study))))

    def series(self, series: Series, study: Study) -> Shown:
        attrs = self._deid.attrs(QueryLevel.SERIES, series.attrs, study=_study_row(study))
        return Shown(self._deid.uid(series.uid), _no_urls(attrs))

    def instance(self, instance: Instance, series: Series, study: Study) -> Shown:
        attrs = self._deid.attrs(QueryLevel.INSTANCE, instance.attrs, study=_study_row(study))
        return Shown(self._deid.uid(instance.uid), _no_urls(attrs))

    def serves(self, instance: Instance, series: Series) -> bool:
        if instance.uid in self._excluded:
            return False
        modality = instance.attrs.get("Modality") or series.attrs.get("Modality", "")
        return self._deid.excluded_attrs({**instance.attrs, "Modality": modality}) is None

    @property
    def generation(self) -> int:
        return self._excluded.generation

    def study_of(self, shown_uid: str) -> str | None:
        if self._same_uids:
            return shown_uid
        return self._studies.get(shown_uid)
