"""Mounts as the benchmarks make them: as a user does, logging at the default
level (``info``), not at the tests' ``debug``, whose lines cost CPU per object."""

from __future__ import annotations

from functools import partial

from tests.mounting import mounted as _mounted

mounted = partial(_mounted, log_level="info")
