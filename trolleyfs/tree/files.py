"""An instance file: one DICOM object as a ``.dcm`` file, read whole through
the :class:`~.context.Reader` (the Store), as stored or in the form its
folder asks for (another transfer syntax, de-identified)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import NotFound, ProtocolError
from ..model import Instance, InstanceRef, form_key
from .base import DirNode, FileNode, dicom_xattrs
from .context import Reader


def _unknown() -> str | None:
    return None


def _as_listed(instance: Instance) -> dict[str, str]:
    return dicom_xattrs(
        instance.attrs,
        SOPInstanceUID=instance.uid,
        SeriesInstanceUID=instance.series_uid,
        StudyInstanceUID=instance.study_uid,
    )


@dataclass(frozen=True)
class FileSource:
    """Where the instance files of one series get their bytes: the reader, the
    server, the form they are served in ("": as stored), all instance UIDs of
    the series (for readahead), the Patient ID its study is listed under
    (the object read must be that patient's) and the xattrs a file shows of
    its instance."""

    reader: Reader
    server: str
    siblings: Callable[[], list[str]]
    form: str = ""
    patient_id: Callable[[], str | None] = _unknown
    xattrs: Callable[[Instance], dict[str, str]] = _as_listed


class InstanceFile(FileNode):
    def __init__(self, name: str, parent: DirNode, instance: Instance, source: FileSource) -> None:
        super().__init__(name, parent, parent.mtime)
        self.instance = instance
        self.source = source

    @property
    def server(self) -> str:
        return self.source.server

    @property
    def instance_uid(self) -> str:
        return self.instance.uid

    @property
    def content_key(self) -> str:
        return form_key(self.instance.uid, self.source.form)

    def known_size(self) -> int | None:
        return self.source.reader.size_of(self.content_key)

    @property
    def ref(self) -> InstanceRef:
        """What a read of this file asks the reader for (in the file's form)."""
        i, s = self.instance, self.source
        return InstanceRef(i.study_uid, i.series_uid, i.uid, s.form, s.patient_id())

    async def read_all(self) -> bytes:
        """The object's bytes.  The server listed this file, so its answer that
        the object does not exist (a 404 from a wrong retrieve URL, a C-GET
        with nothing to send) is the server's error, EIO, never ENOENT: that
        would tell ``cp`` the file it was shown is not there."""
        try:
            return await self.source.reader.get(self.source.server, self.ref, self.source.siblings)
        except NotFound as exc:
            raise ProtocolError(f"{exc} (yet {self.path} was listed by it: the file cannot be fetched)") from None

    def xattrs(self) -> dict[str, str]:
        return self.source.xattrs(self.instance)
