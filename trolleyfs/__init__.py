"""trolleyfs: a PACS as a read-only drive."""

__version__ = "0.1.0"
