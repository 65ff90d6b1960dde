"""The parts of the NIfTI engine that need no dcm2niix: its message in one
line, the renaming and gzipping of its outputs, the input order, the names
it accepts (the engine against the real dcm2niix: tests/integration/test_derive.py)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests import series
from trolleyfs.derive.nifti import MAX_MESSAGE, check_name, collect, one_line, write_inputs
from trolleyfs.derive.tool import ToolRun

BANNER = "Chris Rorden's dcm2niiX version v1.0.20260724  (JP2:OpenJPEG) (JP-LS:CharLS) GCC10.2.1 x86-64 (64-bit Linux)"


def test_the_message_is_the_error_line_else_the_last_line_said() -> None:
    said = f"{BANNER}\nFound 3 DICOM file(s)\nWarning: odd\nError: Unsupported transfer syntax 1.2.3\nlater\n"
    assert one_line(ToolRun(4, said), False) == "dcm2niix: Error: Unsupported transfer syntax 1.2.3 (exit status 4)"
    said = f"{BANNER}\nFound 1 DICOM file(s)\nWarning: odd\nNo valid DICOM images were found\n"
    assert one_line(ToolRun(2, said), False) == "dcm2niix: No valid DICOM images were found (exit status 2)"
    assert (
        one_line(ToolRun(0, f"{BANNER}\nWarning: only this\n"), False)
        == "dcm2niix: Warning: only this (made no volume)"
    )
    assert one_line(ToolRun(-11, BANNER), False) == "dcm2niix: killed by signal 11"
    assert one_line(ToolRun(0, f"{BANNER}\nWarning: odd\n"), True) is None
    assert one_line(ToolRun(8, "Error: some bad\n"), True) == "dcm2niix: Error: some bad (exit status 8)"


def test_a_long_message_is_cut() -> None:
    message = one_line(ToolRun(1, "Error: " + "x" * 1000), False)
    assert message is not None and len(message) == MAX_MESSAGE and message.endswith("...")


def test_outputs_are_renamed_and_the_volumes_gzipped(tmp_path: Path) -> None:
    volume = b"\x5c\x01\x00\x00" + bytes(range(256)) * 10
    for file_name, data in {
        "series_e1.nii": volume,
        "series_e1.json": b"{}",
        "series.bval": b"0 1000",
        "other.txt": b"?",
    }.items():
        (tmp_path / file_name).write_bytes(data)
    files = collect(tmp_path, "7 DWI b1000", 6)
    assert [n for n, _ in files] == [
        "7 DWI b1000.bval",
        "7 DWI b1000_e1.json",
        "7 DWI b1000_e1.nii.gz",
        "7 DWI b1000_other.txt",
    ]
    packed = dict(files)["7 DWI b1000_e1.nii.gz"]
    assert gzip.decompress(packed) == volume
    assert packed[4:8] == b"\0\0\0\0" and packed[3] & 0x08 == 0
    assert collect(tmp_path, "7 DWI b1000", 6) == files


def test_the_inputs_are_written_in_uid_order_whatever_the_order_given(tmp_path: Path) -> None:
    objects = series.ct(slices=5, key="order")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_inputs(a, objects)
    write_inputs(b, [*list(reversed(objects)), b"not DICOM"])
    names = sorted(p.name for p in (a / "in").iterdir())
    assert names == [f"{i:06}.dcm" for i in range(5)]
    assert all((a / "in" / n).read_bytes() == (b / "in" / n).read_bytes() for n in names)
    assert (b / "in" / "000005.dcm").read_bytes() == b"not DICOM"
    assert list((a / "out").iterdir()) == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b"])
def test_a_name_that_cannot_be_a_file_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="output name"):
        check_name(name)


def test_ordinary_series_names_are_accepted() -> None:
    for name in ("2 Phantom oblique", "3 ME GRE (2)", "Ünïcode ✓", "-dash"):
        check_name(name)
