"""What a derived view reports under ``views`` in ``stats.json``: how many
outputs were made, how many attempts made nothing, the bytes made and the
seconds spent (wall time of the conversions, not CPU time)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DeriveCounters:
    """Counters of one engine (one per kind of view: NIfTI, preview).

    ``conversions``: runs that produced output; ``failures``: runs that
    produced nothing (the series cannot be converted, the tool timed out or
    crashed, the image cannot be decoded); ``bytes_out``: bytes of all
    outputs; ``seconds``: time spent in runs, successful or not."""

    conversions: int = 0
    failures: int = 0
    bytes_out: int = 0
    seconds: float = 0.0

    def record(self, made: int | None, seconds: float) -> None:
        """Count one run: ``made`` bytes of output, or None when it made nothing."""
        if made is None:
            self.failures += 1
        else:
            self.conversions += 1
            self.bytes_out += made
        self.seconds += max(0.0, seconds)

    def as_dict(self) -> dict[str, int | float]:
        """``{"conversions": 3, "failures": 1, "bytes_out": 123456, "seconds": 2.5}``."""
        return {
            "conversions": self.conversions,
            "failures": self.failures,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 3),
        }
