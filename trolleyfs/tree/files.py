"""An instance file: one DICOM object as a ``.dcm`` file, read whole through
the :class:`~.context.Reader` (the Store), as stored or in the transfer syntax
its folder asks for (its ``form``)."""

from __future__ import annotations

from collections.abc import Callable

from ..model import Instance, InstanceRef, form_key
from .base import DirNode, FileNode, dicom_xattrs
from .context import Reader


class InstanceFile(FileNode):
    def __init__(
        self,
        name: str,
        parent: DirNode,
        mtime: float,
        reader: Reader,
        server: str,
        instance: Instance,
        siblings: Callable[[], list[str]],
        form: str = "",
        patient_id: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``siblings`` gives the instance UIDs of the series (for readahead);
        ``form``: the transfer syntax UID to serve the object in ("": as stored);
        ``patient_id``: the Patient ID its study is listed under (the object
        read must be that patient's)."""
        super().__init__(name, parent, mtime)
        self.server, self.instance = server, instance
        self.form = form
        self._reader = reader
        self._siblings = siblings
        self._patient_id = patient_id

    @property
    def instance_uid(self) -> str:
        return self.instance.uid

    @property
    def content_key(self) -> str:
        return form_key(self.instance.uid, self.form)

    def known_size(self) -> int | None:
        return self._reader.size_of(self.content_key)

    async def read_all(self) -> bytes:
        i = self.instance
        ref = InstanceRef(i.study_uid, i.series_uid, i.uid, self.form, self._patient_id())
        return await self._reader.get(self.server, ref, self._siblings)

    def xattrs(self) -> dict[str, str]:
        return dicom_xattrs(
            self.instance.attrs,
            SOPInstanceUID=self.instance.uid,
            SeriesInstanceUID=self.instance.series_uid,
            StudyInstanceUID=self.instance.study_uid,
        )
