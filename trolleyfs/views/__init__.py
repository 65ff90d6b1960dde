"""Other views of the same objects: instance files in another transfer syntax
(:mod:`.transcode`, :mod:`.forms`), a series' or study's headers as one DICOM
JSON document (:mod:`.metadata`), and a series or study as a zip streamed
from the caches (:mod:`.zipstream`).  The tree nodes that show them are
:mod:`trolleyfs.tree.views`'."""
