"""The ``[deidentify]`` table of the config: the key, the options, and what
this node may serve and keep.

```toml
[deidentify]
key_file = "/etc/trolleyfs/deid.key"   # required
options = ["retain-longitudinal-temporal-information-modified-dates"]
include_burned_in = false              # serve instances whose pixels may carry identity
keep_originals = false                 # let the disk cache and the shared tier hold original objects
```

The key file holds the secret that every pseudonym and date shift is keyed
by: 32 or more random bytes (``head -c 32 /dev/urandom > deid.key``), or
their hex form (64 or more hex digits, whitespace allowed).  Text that is not
hex is refused: a passphrase is not a key (Patient IDs are guessable, so
pseudonyms are only as safe as the key is unguessable).  The file must not be
readable or writable by other users, nor writable by its group (``chmod 600``,
or 640 for a group the service runs as): whoever holds it can confirm who a
pseudonym is.  Every node that serves the same de-identified data must have
the same key file.

``keep_originals = false`` (the default) says that on this node original
(identifiable) objects are held only in memory while they are de-identified:
the disk cache and the shared tier store the de-identified form only.

Each problem is one :class:`~trolleyfs.errors.ConfigError` naming the file,
the key and the problem.  The key file is read here, so a wrong key fails
before anything is mounted."""

from __future__ import annotations

import stat
import string
from dataclasses import dataclass, field
from pathlib import Path

from ..credentials import Secret
from ..tomltable import Table
from .keyed import MIN_KEY_BYTES
from .options import Option, UnknownOption, parse_options

MAX_KEY_FILE_BYTES = 4096
_KEYS = ("key_file", "options", "include_burned_in", "keep_originals")
_TEXT = frozenset(string.printable.encode("ascii"))
_HEX = frozenset(string.hexdigits)


@dataclass(frozen=True)
class DeidConfig:
    """The ``[deidentify]`` table.  ``key`` is the key's bytes in hex."""

    key_file: str
    key: Secret = field(repr=False)
    options: frozenset[Option] = frozenset()
    include_burned_in: bool = False
    keep_originals: bool = False

    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key.get())


def _check_mode(t: Table, path: Path) -> None:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise t.error("key_file", f"{path} is not a regular file")
    if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
        raise t.error(
            "key_file",
            f"{path} can be read or changed by other users (mode {stat.S_IMODE(mode):04o}): chmod 600 it "
            "(or 640 for the group trolleyfs runs as)",
        )


def key_from_bytes(raw: bytes) -> bytes:
    """The key in a key file's content: the hex it spells, or the bytes as
    they are; ValueError (saying why) otherwise."""
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise ValueError(f"is {len(raw)} bytes long: a key file holds {MIN_KEY_BYTES} to {MAX_KEY_FILE_BYTES} bytes")
    if raw and all(b in _TEXT for b in raw):
        text = "".join(raw.decode("ascii").split())
        if not (text and all(c in _HEX for c in text) and len(text) % 2 == 0):
            raise ValueError(
                "holds text that is not a hex key; a passphrase is not a key: "
                f"make one with head -c {MIN_KEY_BYTES} /dev/urandom > FILE"
            )
        key = bytes.fromhex(text)
    else:
        key = raw
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"holds a key of {len(key)} bytes, at least {MIN_KEY_BYTES} are needed: "
            f"head -c {MIN_KEY_BYTES} /dev/urandom > FILE"
        )
    return key


def read_key(t: Table, name: str) -> tuple[str, bytes]:
    """The path and key of the key file named by ``name``."""
    path = Path(t.require(name, str)).expanduser()
    try:
        _check_mode(t, path)
        raw = path.read_bytes()
    except FileNotFoundError:
        raise t.error(name, f"no such file: {path}") from None
    except OSError as exc:
        raise t.error(name, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return str(path), key_from_bytes(raw)
    except ValueError as exc:
        raise t.error(name, f"{path} {exc}") from None


def _options(t: Table) -> frozenset[Option]:
    names = t.get("options", list, [])
    if not all(isinstance(n, str) for n in names):
        raise t.error("options", "must be an array of option names (strings)")
    try:
        return parse_options(names)
    except UnknownOption as exc:
        raise t.error("options", str(exc)) from None


def parse_deidentify(t: Table) -> DeidConfig:
    """The ``[deidentify]`` table."""
    t.check_keys(_KEYS)
    path, key = read_key(t, "key_file")
    return DeidConfig(
        key_file=path,
        key=Secret(key.hex()),
        options=_options(t),
        include_burned_in=t.get("include_burned_in", bool, False),
        keep_originals=t.get("keep_originals", bool, False),
    )
