"""An instance file: one DICOM object as a ``.dcm`` file, read whole through
the :class:`~.context.Reader` (the Store)."""

from __future__ import annotations

from collections.abc import Callable

from ..model import Instance
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
    ) -> None:
        """``siblings`` gives the instance UIDs of the series (for readahead)."""
        super().__init__(name, parent, mtime)
        self.server, self.instance = server, instance
        self._reader = reader
        self._siblings = siblings

    @property
    def instance_uid(self) -> str:
        return self.instance.uid

    def known_size(self) -> int | None:
        return self._reader.size_of(self.instance.uid)

    async def read_all(self) -> bytes:
        return await self._reader.get(self.server, self.instance.ref, self._siblings)

    def xattrs(self) -> dict[str, str]:
        return dicom_xattrs(self.instance.attrs, SOPInstanceUID=self.instance.uid,
                            SeriesInstanceUID=self.instance.series_uid,
                            StudyInstanceUID=self.instance.study_uid)  # fmt: skip
