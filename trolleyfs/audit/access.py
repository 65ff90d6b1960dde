"""What the front ends record: one :class:`Access` per file opened (its line
written when it is closed, with the bytes read and where they came from) and
one line per directory listed, through an :class:`Auditor` over the trail.

Which DICOM objects a path shows is read from the tree's nodes (the node
read, then its parents): a node showing an instance has ``instance`` (a
:class:`~trolleyfs.model.Instance`), a series directory ``series``, a study
directory ``study``, and they name their ``server``; a views node (a
series' ``.json`` or ``.zip``) shows the directory it is made of (``_of``).
The tree is a layer above this one, so the nodes are read by these
attributes, not by their classes.  The nodes keep the UIDs and attributes
the server listed, so the record names the real objects also when the files
are served de-identified.

The mount's own control files (``.trolleyfs/``: counters, no patient data)
are not recorded, so that monitoring that reads them does not fill the trail.

Never blocks, never raises into a read: recording queues a line
(:meth:`~.trail.AuditTrail.record`); only :meth:`Auditor.admit` raises, in
``on_failure = "block"`` mode, before an access begins."""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass

from ..model import Instance, Series, Study
from ..rootnames import CONTROL_DIR
from .record import AuditRecord, Who
from .source import SourceNote
from .trail import AuditTrail, AuditUnavailable

log = logging.getLogger("trolleyfs.audit")

MAX_DEPTH = 64  # parents looked at, at most
_CONTROL = f"/{CONTROL_DIR}"


@dataclass(frozen=True)
class Subject:
    """The DICOM objects a path shows, where it has them."""

    study: str | None = None
    series: str | None = None
    instance: str | None = None
    server: str | None = None
    patient: str | None = None
    accession: str | None = None
    sop_class: str | None = None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def subject_of(node: object) -> Subject:
    """What ``node`` (a tree node) shows, from it and its parents."""
    found: dict[str, str | None] = dict.fromkeys(("study", "series", "instance", "server", "patient", "accession"))
    sop_class = None
    seen = 0
    current: object | None = node
    while current is not None and seen < MAX_DEPTH:
        seen += 1
        instance = getattr(current, "instance", None)
        if isinstance(instance, Instance) and found["instance"] is None:
            found.update(instance=instance.uid, series=instance.series_uid, study=instance.study_uid)
            sop_class = _text(instance.attrs.get("SOPClassUID"))
        series = getattr(current, "series", None)
        if isinstance(series, Series):
            found["series"] = found["series"] or series.uid
            found["study"] = found["study"] or series.study_uid
            found["patient"] = found["patient"] or _text(getattr(current, "patient_id", None))
        study = getattr(current, "study", None)
        if isinstance(study, Study):
            found["study"] = found["study"] or study.uid
            found["patient"] = found["patient"] or _text(study.attrs.get("PatientID"))
            found["accession"] = found["accession"] or _text(study.attrs.get("AccessionNumber"))
        found["server"] = found["server"] or _text(getattr(current, "server", None))
        shown = getattr(current, "_of", None)  # a views node: the directory it is made of
        current = shown if shown is not None else getattr(current, "parent", None)
    return Subject(**found, sop_class=sop_class)


def _path(node: object) -> str:
    path = getattr(node, "path", None)
    return path if isinstance(path, str) else ""


class Access:
    """One file open, from its open to its close."""

    __slots__ = ("nbytes", "note", "path", "subject", "when", "who")

    def __init__(self, who: Who, node: object) -> None:
        self.when = _dt.datetime.now()
        self.who = who
        self.path = _path(node)
        self.subject = subject_of(node)
        self.note = SourceNote()  # filled by the read path (:func:`~.source.served_from`)
        self.nbytes = 0

    def record(self, action: str, result: str = "ok") -> AuditRecord:
        s = self.subject
        return AuditRecord.make(
            self.who,
            action,
            self.path,
            study=s.study,
            series=s.series,
            instance=s.instance,
            source=self.note.source,
            nbytes=self.nbytes,
            server=s.server,
            patient=s.patient,
            accession=s.accession,
            sop_class=s.sop_class,
            result=result,
            when=self.when,
        )


class Auditor:
    """The front ends' side of the trail."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    def admit(self) -> None:
        """Before an access: raise AuditUnavailable (EIO) if the trail cannot be
        written and ``on_failure = "block"``."""
        self.trail.admit()

    def opened(self, who: Who, node: object) -> Access:
        return Access(who, node)

    def closed(self, access: Access, action: str = "read", result: str = "ok") -> None:
        """The access is over (a file closed, a listing sent): its line, queued."""
        if access.path == _CONTROL or access.path.startswith(_CONTROL + "/"):
            return
        try:
            self.trail.record(access.record(action, result))
        except AuditUnavailable as exc:  # the read has happened: say so, it cannot be undone
            log.error("audit: %s: %s was not recorded", exc, access.path)
        except Exception:  # never into a read
            log.exception("audit: recording %s", access.path)

    def listed(self, who: Who, node: object, result: str = "ok") -> None:
        """A directory was listed (or failed to be, with ``result``)."""
        self.closed(Access(who, node), "list", result)
