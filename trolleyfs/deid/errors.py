"""The errors of de-identification: an object that cannot be de-identified
(EIO), and one that this mount does not serve (ENOENT: it is not there)."""

from __future__ import annotations

import errno

from ..errors import TrolleyError


class DeidError(TrolleyError):
    """An object that cannot be de-identified (not Part-10, or broken)."""


class NotPart10(DeidError):
    """The bytes are not a Part-10 object that pydicom can read."""


class Excluded(TrolleyError):
    """An object that this mount does not serve: its pixels may identify
    the patient (see :mod:`.exclusion`).  The message says why."""

    errno = errno.ENOENT
