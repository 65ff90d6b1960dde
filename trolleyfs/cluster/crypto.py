"""Keeping the shared tier private from whoever can read Redis (``key_file``).

With a key, each stored chunk is sealed with AES-256-GCM (``cryptography``),
bound by its associated data to the object's key, write and position, so a
chunk cannot be swapped, reordered or cut off without failing to open; and
key names carry an HMAC of the UID instead of the UID.  Two keys are derived
from the key file with HKDF, one per job.  Without a key both are the
identity: values are stored as they are, names are readable."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class Unreadable(Exception):
    """A stored value that does not open: corrupt, cut, swapped or sealed with another key."""


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"trolleyfs shared " + purpose).derive(key)


class Sealer:
    """Seals and opens values, and names keys; ``key=None``: no encryption."""

    def __init__(self, key: bytes | None) -> None:
        self.encrypted = key is not None
        self._aead = AESGCM(_derive(key, b"values")) if key is not None else None
        self._names = _derive(key, b"names") if key is not None else None

    def seal(self, data: bytes | memoryview, bound_to: bytes) -> bytes | memoryview:
        """``data`` as stored; ``bound_to`` must be given again to open it."""
        if self._aead is None:
            return data
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, bytes(data), bound_to)

    def open(self, stored: bytes, bound_to: bytes) -> bytes:
        if self._aead is None:
            return stored
        if len(stored) < NONCE_BYTES + 16:
            raise Unreadable("too short to be a sealed value")
        try:
            return self._aead.decrypt(stored[:NONCE_BYTES], stored[NONCE_BYTES:], bound_to)
        except InvalidTag:
            raise Unreadable("does not open with this key (corrupt, or sealed with another key)") from None

    def name(self, text: str) -> str:
        """The part of a key name that says what it is: ``text`` itself, or with
        a key an HMAC of it (so key names do not show UIDs)."""
        if self._names is None:
            return text
        return hmac.new(self._names, text.encode(), hashlib.sha256).hexdigest()[:40]
