"""Keyed pseudonyms: everything that depends on the secret key.

Each value is an HMAC-SHA256 of the original under the key, with a label per
use (so a UID and a Patient ID with the same text get unrelated pseudonyms):

- a UID becomes ``2.25.<n>``, ``n`` the integer of a UUID (version 8, the
  RFC 9562 "custom" version) built from the HMAC's first 16 bytes: at most 44
  characters, the same original always the same UID;
- the patient becomes a Patient ID of 16 base-32 characters and a Patient
  Name ``ANON^<that ID>``, both from the patient's identity (see
  :func:`patient_identity`), so the name and the ID agree wherever they occur;
- dates shift back by a per-patient number of days between
  :data:`MIN_SHIFT_DAYS` and :data:`MAX_SHIFT_DAYS`, from the same identity:
  every study of a patient keeps its intervals, and a shifted date is never
  within a year of the true one.

No state, no randomness: the same key gives the same results on every run
and machine, another key other ones.  :data:`ENGINE_VERSION` names the rules
that produce the output bytes; it changes whenever they change, so that
caches keyed by :meth:`Keyed.form` never serve the output of older rules."""

from __future__ import annotations

import base64
import hashlib
import hmac

ENGINE_VERSION = "2"
MIN_KEY_BYTES = 32
MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3652
ID_LENGTH = 16
NAME_PREFIX = "ANON^"
_UID_ROOT = "2.25."


def clean_uid(value: str) -> str:
    """A UID as stored, without its padding (a NUL or spaces)."""
    return value.strip().rstrip("\0").strip()


def patient_identity(patient_id: str | None, study_uid: str | None) -> str:
    """Who a patient is for pseudonyms and date shifts: the Patient ID
    (without padding); for an object without one, its study (each such
    study is then a patient of its own)."""
    pid = (patient_id or "").strip().rstrip("\0").strip()
    if pid:
        return "id:" + pid
    return "study:" + clean_uid(study_uid or "")


class Keyed:
    """The key and the pseudonyms made with it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the key must have at least {MIN_KEY_BYTES} bytes, not {len(key)}")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "Keyed(<key>)"

    def digest(self, label: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` under the key, for the use ``label``."""
        msg = label.encode("ascii") + b"\0" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """The new UID of ``original``: ``2.25.`` and a version-8 UUID's integer."""
        n = int.from_bytes(self.digest("uid", clean_uid(original))[:16], "big")
        n = (n & ~(0xF << 76)) | (0x8 << 76)  # version 8
        n = (n & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
        return _UID_ROOT + str(n)

    def patient_id(self, identity: str) -> str:
        """The pseudonymous Patient ID of a patient (16 base-32 characters)."""
        return base64.b32encode(self.digest("patient", identity)).decode("ascii")[:ID_LENGTH]

    def patient_name(self, identity: str) -> str:
        """The pseudonymous Patient Name of a patient: ``ANON^<Patient ID>``."""
        return NAME_PREFIX + self.patient_id(identity)

    def shift_days(self, identity: str) -> int:
        """How many days this patient's dates move back."""
        n = int.from_bytes(self.digest("date-shift", identity)[:8], "big")
        return MIN_SHIFT_DAYS + n % (MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1)

    def form(self, options: str) -> str:
        """A name for the output of this key with ``options`` (their names,
        joined) under this engine version, for cache keys: it tells nothing
        about the key."""
        tag = self.digest("form", f"{ENGINE_VERSION}|{options}").hex()[:16]
        return f"deid-{tag}"
