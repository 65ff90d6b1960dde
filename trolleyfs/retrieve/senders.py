"""Who may send objects to the C-MOVE receiver, and where it listens.

A C-MOVE asks one PACS to send; the receiver takes C-STOREs only from that
PACS: an association whose calling AE title is one of the server's
``sender_aets`` (by default its ``called_aet``) and whose peer address is one
of its ``sender_hosts`` (by default its ``host``: a name stands for every
address it resolves to; an entry may also be an address or a network such as
``10.1.2.0/24``).  :class:`Senders` holds one server's rule, resolved; the
receiver asks :meth:`Senders.why_not` for each association and each object.

Names are resolved when the receiver starts and again when an association
comes from an address none of them gave (a PACS whose address changed is not
locked out until a remount); each lookup runs in the calling thread (the
receiver's start runs it in a worker thread, an association in its own).

:func:`listen_address` is the address the receiver binds when the config
names none: the one of this machine's addresses that routes to the PACS
(found by connecting a UDP socket, which sends nothing)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Iterable

from ..errors import UserError

log = logging.getLogger("trolleyfs.storescp")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def peer_address(text: str) -> Address | None:
    """``text`` as an address (an IPv4-mapped IPv6 address as IPv4), None if it is none."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _literal(entry: str) -> Network | None:
    """An address or network written out, or None for a host name."""
    try:
        net = ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 128:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(mapped)
    return net


def resolve(name: str) -> set[Address]:
    """Every address ``name`` resolves to (blocking); empty if it does not."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    found = set()
    for *_, sockaddr in infos:
        addr = peer_address(str(sockaddr[0]))
        if addr is not None:
            found.add(addr)
    return found


class Senders:
    """The senders one server's retrievals take objects from (thread-safe)."""

    def __init__(self, server: str, aets: Iterable[str], hosts: Iterable[str]) -> None:
        self.server = server
        self.aets = frozenset(a.strip() for a in aets)
        self.hosts = tuple(hosts)
        self._networks = [n for n in map(_literal, self.hosts) if n is not None]
        self._names = [h for h in self.hosts if _literal(h) is None]
        self._lock = threading.Lock()
        self._resolved: set[Address] = set()

    def describe(self) -> str:
        """The rule, for messages: ``AE title(s) from host(s)``."""
        return f"{'/'.join(sorted(self.aets))} from {', '.join(self.hosts)}"

    def resolve(self) -> None:
        """Look the host names up (blocking); names that resolve to nothing are
        logged and tried again at the next association from an unknown address."""
        found: set[Address] = set()
        for name in self._names:
            addrs = resolve(name)
            if not addrs:
                log.warning("C-MOVE receiver: %s: sender host %r does not resolve (yet)", self.server, name)
            found |= addrs
        with self._lock:
            self._resolved = found

    def _knows(self, addr: Address) -> bool:
        with self._lock:
            if addr in self._resolved:
                return True
        return any(addr in net for net in self._networks)

    def host_allowed(self, address: str) -> bool:
        """Whether ``address`` is one of this server's; names are looked up
        again before an unknown address is refused."""
        addr = peer_address(address)
        if addr is None:
            return False
        if self._knows(addr):
            return True
        if not self._names:
            return False
        self.resolve()
        return self._knows(addr)

    def why_not(self, aet: str, address: str) -> str | None:
        """None if ``aet`` at ``address`` is this server, else why not."""
        if aet.strip() not in self.aets:
            return f"calling AE title {aet.strip()!r} is not {self.server}'s ({self.describe()})"
        if not self.host_allowed(address):
            return f"{address} is not an address of {self.server} ({self.describe()})"
        return None


def listen_address(store_host: str, pacs_host: str) -> str:
    """The address the receiver binds (blocking): ``store_host`` if the config
    names one, else this machine's address that routes to ``pacs_host``."""
    if store_host:
        return store_host
    try:
        infos = socket.getaddrinfo(pacs_host, 104, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(sockaddr)  # a UDP "connection" sends nothing: it asks the routing table
            return str(s.getsockname()[0])
    except (OSError, UnicodeError, IndexError) as exc:
        raise UserError(
            f"C-MOVE receiver: cannot find this machine's address towards the PACS {pacs_host!r} "
            f"({exc}): set store_host to the address the PACS connects to"
        ) from None
