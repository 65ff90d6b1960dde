"""The CPU cost of de-identifying one 512x512 16-bit CT object (the read
path's work per object in a de-identified mount): a plain CT (the attributes
a scanner writes) and one holding every attribute of PS3.15 Table E.1-1, in
Explicit VR Little Endian and in JPEG 2000 lossless (pixel data is never
decoded, so the syntax should not matter), with the basic profile and with
the modified-dates and clean-descriptors options.

Run: ``.venv/bin/python -m bench.deid``.  Prints the median of 50 runs
per row, in one thread (CPU time, process_time)."""

from __future__ import annotations

import io
import statistics
import time

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from tests.identifying import Study, make_object
from trolleyfs.deid import Deidentifier

RUNS = 50


def _j2k(data: bytes) -> bytes:
    ds = dcmread(io.BytesIO(data))
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _median_ms(d: Deidentifier, data: bytes) -> float:
    d.part10(data)  # warm: the table and pydicom's dictionaries
    times = []
    for _ in range(RUNS):
        start = time.process_time()
        d.part10(data)
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def main() -> None:
    key = bytes(range(32))
    basic = Deidentifier(key)
    options = Deidentifier(key, ["retain-longitudinal-temporal-information-modified-dates", "clean-descriptors"])
    for every in (False, True):
        plain = make_object(Study("Z", 99), "CT", 1, 0, 1, size=512, every_attribute=every)
        for name, data in ((ExplicitVRLittleEndian.name, plain), (JPEG2000Lossless.name, _j2k(plain))):
            label = f"512x512 CT, {'every table attribute' if every else 'plain'}, {name} ({len(data) // 1024} KiB)"
            print(f"{label}: basic {_median_ms(basic, data):.1f} ms, options {_median_ms(options, data):.1f} ms")


if __name__ == "__main__":
    main()
