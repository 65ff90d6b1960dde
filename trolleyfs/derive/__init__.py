"""Derived forms of a series, made here from its Part-10 objects: what
``dcm2niix`` makes of them (NIfTI with BIDS sidecars, :mod:`.nifti`) and a
small PNG preview (:mod:`.preview`).

The package is self-contained: it is handed the objects (as the read path
delivers them: in the folder's transfer syntax, de-identified where the
mount is) and hands back bytes; it knows nothing of the tree, the caches or
FUSE.  Layers, lowest first: :mod:`.counters` (what ``stats.json`` shows),
:mod:`.tool` (a program in a private temp dir under a deadline),
:mod:`.frames` (one frame as display values), then the engines
:mod:`.nifti` and :mod:`.preview`."""
