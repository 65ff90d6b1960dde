"""Who may send to the C-MOVE receiver (trolleyfs/retrieve/senders.py) and
how the config says it: AE titles and hosts (names, addresses, networks),
IPv4-mapped peer addresses, the defaults, the listening address that routes
to the PACS, and one-line config errors.  No network: names are resolved from
/etc/hosts (``localhost``)."""

from __future__ import annotations

import pytest

from trolleyfs.config import ConfigError, parse
from trolleyfs.errors import UserError
from trolleyfs.retrieve.senders import Senders, listen_address, peer_address


def test_the_pacs_ae_title_from_its_address_only() -> None:
    s = Senders("pacs", ["PACS"], ["192.0.2.10"])
    assert s.why_not("PACS", "192.0.2.10") is None
    assert s.why_not("PACS ", "::ffff:192.0.2.10") is None  # padded AE title; IPv4 seen on a dual-stack socket
    assert "calling AE title 'EVIL'" in (s.why_not("EVIL", "192.0.2.10") or "")
    assert "192.0.2.11 is not an address of pacs" in (s.why_not("PACS", "192.0.2.11") or "")
    assert s.why_not("PACS", "not an address") is not None


def test_networks_names_and_several_ae_titles() -> None:
    s = Senders("pacs", ["NODE1", "NODE2"], ["10.1.2.0/24", "localhost", "2001:db8::/32"])
    s.resolve()
    assert s.why_not("NODE2", "10.1.2.77") is None
    assert s.why_not("NODE1", "127.0.0.1") is None  # localhost resolves to it
    assert s.why_not("NODE1", "2001:db8::5") is None
    assert s.why_not("NODE1", "10.1.3.1") is not None
    assert s.describe() == "NODE1/NODE2 from 10.1.2.0/24, localhost, 2001:db8::/32"


def test_a_name_is_looked_up_again_for_an_unknown_address() -> None:
    """Not resolved yet (or resolved before the PACS moved): the lookup is
    made again before an address is refused."""
    s = Senders("pacs", ["PACS"], ["localhost"])
    assert s.why_not("PACS", "127.0.0.1") is None


def test_peer_address_forms() -> None:
    assert str(peer_address("::ffff:10.0.0.1")) == "10.0.0.1"
    assert str(peer_address("fe80::1%eth0")) == "fe80::1"
    assert peer_address("pacs.example") is None


def test_listen_address_routes_to_the_pacs() -> None:
    assert listen_address("", "127.0.0.1") == "127.0.0.1"
    assert listen_address("", "localhost") in ("127.0.0.1", "::1")
    assert listen_address("0.0.0.0", "127.0.0.1") == "0.0.0.0"  # the config's word wins
    with pytest.raises(UserError, match="set store_host"):
        listen_address("", "0.0.0.0:bad")


CMOVE = """
[servers.pacs]
search   = { protocol = "dicom-qr", host = "pacs", port = 104, called_aet = "PACS" }
retrieve = { protocol = "c-move", host = "pacs", port = 104, called_aet = "PACS", store_port = 11112 EXTRA }
"""


def _retrieve(extra: str):
    return parse(CMOVE.replace(" EXTRA", extra), "p.toml").servers["pacs"].retrieve


def test_c_move_senders_default_to_the_pacs_and_can_be_listed() -> None:
    ep = _retrieve("")
    assert (ep.sender_aets, ep.sender_hosts, ep.store_host) == ((), (), "")  # the PACS's called_aet and host
    ep = _retrieve(', sender_aets = ["PACS", "PACS-NODE2"], sender_hosts = ["pacs", "10.1.2.0/24"], store_host = "::"')
    assert ep.sender_aets == ("PACS", "PACS-NODE2")
    assert ep.sender_hosts == ("pacs", "10.1.2.0/24")
    assert ep.store_host == "::"


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        (", sender_aets = []", "sender_aets", "at least one AE title"),
        (', sender_aets = ["A-NAME-FAR-TOO-LONG"]', "sender_aets", "expected an AE title"),
        (", sender_aets = [3]", "sender_aets", "expected an AE title"),
        (', sender_aets = "PACS"', "sender_aets", "must be"),
        (', sender_hosts = ["a host"]', "sender_hosts", "expected a host name"),
        (", sender_hosts = []", "sender_hosts", "at least one host name"),
        (', store_host = ""', "store_host", "an address to listen on"),
    ],
)
def test_c_move_sender_mistakes(extra: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _retrieve(extra)
    assert info.value.key == f"servers.pacs.retrieve.{key}" and words in str(info.value), str(info.value)
