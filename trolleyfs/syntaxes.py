"""The transfer syntaxes a folder may ask its files to be served in, and the
views a folder may offer, as the config names them.  No pydicom here: config
parsing must stay quick to import."""

from __future__ import annotations

UNCOMPRESSED = "uncompressed"  # the config's word for Explicit VR Little Endian
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

# What a converted file may be: the uncompressed syntaxes, and the lossless
# compressed ones pydicom's encoder plugins write (so a conversion never loses
# anything it did not lose before).
TARGETS = {
    EXPLICIT_VR_LITTLE_ENDIAN: "Explicit VR Little Endian",
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
}

VIEWS = ("metadata", "zip", "nifti", "preview")


def parse_transfer_syntax(text: str) -> str | None:
    """``"uncompressed"`` or a transfer syntax UID -> the UID; ``"as-stored"`` or
    ``""`` -> None (serve files as stored).  ValueError names what is allowed."""
    t = text.strip()
    if t in ("", "as-stored"):
        return None
    if t.lower() == UNCOMPRESSED:
        return EXPLICIT_VR_LITTLE_ENDIAN
    if t in TARGETS:
        return t
    allowed = ", ".join(f"{uid} ({name})" for uid, name in TARGETS.items())
    raise ValueError(
        f'{text!r} is not a transfer syntax files can be served in (use "uncompressed" or one of: {allowed})'
    )


def name_of(uid: str) -> str:
    """A transfer syntax's name for messages (its UID if unknown here)."""
    return TARGETS.get(uid, uid)
