"""De-identification: DICOM PS3.15 Annex E's Basic Application Level
Confidentiality Profile and its options, with keyed, stable pseudonyms, for
a mount that shows only de-identified data.

A leaf package: it imports pydicom and trolleyfs's leaf modules (errors,
model, credentials, tomltable), and nothing of the read path or the tree,
which call it.

Layout (one job per module):

- ``data/annex_e.json``: the standard's table (PS3.15 Table E.1-1, DICOM
  2024b), shipped as data with its source named in ``data/README.md``;
- :mod:`.options`: the options, their names in the config and their codes;
- :mod:`.table`: the table read and resolved to one action per attribute;
- :mod:`.keyed`: everything the key decides (UIDs, patient pseudonyms, date
  shifts);
- :mod:`.values`: what an action does to a value (dummies, shifted dates,
  cleaned text), for objects and listings alike;
- :mod:`.walk`: the profile applied to a pydicom Dataset, recursively;
- :mod:`.method`: the attributes that record what was done;
- :mod:`.exclusion`: which instances cannot be made safe;
- :mod:`.codec`: Part-10 bytes in and out, transfer syntax and pixels kept;
- :mod:`.listing`: the profile applied to a listing's ``{keyword: string}``;
- :mod:`.engine`: :class:`Deidentifier`, the API of the above;
- :mod:`.errors`: what goes wrong (DeidError, NotPart10, Excluded);
- :mod:`.config`: the ``[deidentify]`` table of the config.

Why a walk of our own over pydicom, and not ``deid`` or ``dicognito``
(both read, 2026-12):

- **dicognito** (0.19) anonymizes with its own hand-written rules, not the
  standard's table nor its options; it replaces names and addresses with
  plausible fake ones and shifts dates randomly.  Its pseudonyms come from
  MD5 over a "seed" string concatenated with the value: not a keyed MAC,
  and without a seed each run differs.  Its UIDs and dates are consistent
  within a run, which is the job of a batch tool, not of a live view.
- **deid** (pydicom/deid, 0.4) is a recipe engine: the rules are a recipe
  file that we would have to write (its default recipe is its own, not
  Table E.1-1 with the options' columns), its stable UIDs use pydicom's
  unkeyed ``generate_uid(entropy_srcs=...)``, and it brings matplotlib and
  a pixel-cleaning stack that a read path must not load.
- The contract here is narrow and strict: the table exactly as the standard
  gives it, every option column, keyed HMAC-SHA256 pseudonyms, byte-identical
  output on every node, no pixel decoding, and the same values in listings
  as in files.  Neither library offers the last three; a walk of about 200
  lines over pydicom's Dataset does, and pydicom (already a dependency) does
  all the DICOM parsing and encoding.

Measured on this project's machine kind (2 cores): see ``docs/deidentify.md``
for the cost per 512x512 CT object."""

from __future__ import annotations

from .config import DeidConfig, parse_deidentify
from .engine import Deidentifier
from .errors import DeidError, Excluded, NotPart10
from .exclusion import LISTING_FIELDS
from .options import Option

__all__ = [
    "LISTING_FIELDS",
    "DeidConfig",
    "DeidError",
    "Deidentifier",
    "Excluded",
    "NotPart10",
    "Option",
    "parse_deidentify",
]
