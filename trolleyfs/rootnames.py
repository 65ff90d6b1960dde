"""The names of the mount root's own directories and files (a leaf: the
config checks folder names against them, the tree makes them, and the
``prefetch`` command reads ``.trolleyfs/stats.json`` through the mount)."""

from __future__ import annotations

BY_UID_DIR = "by-uid"  # any study by its UID
BY_ACCESSION_DIR = "by-accession"  # studies by accession number
BY_PATIENT_DIR = "by-patient"  # a patient's studies
QUERY_DIR = "query"  # any study query written in the path
CONTROL_DIR = ".trolleyfs"  # counters and state
STATS_FILE = "stats.json"  # in CONTROL_DIR
VIEWS_DIR = "views"  # the folders' views; a folder may not be so named when any folder has views

# the root's own directories: no folder may be so named
RESERVED_NAMES = frozenset({BY_UID_DIR, BY_ACCESSION_DIR, BY_PATIENT_DIR, QUERY_DIR, CONTROL_DIR})
