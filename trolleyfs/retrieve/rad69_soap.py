"""The SOAP side of RAD-69 (IHE XDS-I.b Retrieve Imaging Document Set): the
request envelope naming the wanted objects, reading a response envelope
(status, RegistryErrorList, DocumentResponses, SOAP Faults), and which
exception a RegistryErrorList stands for.  The HTTP exchange and its MTOM
body are :mod:`trolleyfs.retrieve.rad69`'s."""

from __future__ import annotations

import base64
import binascii
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote
from xml.sax.saxutils import escape, quoteattr

from ..errors import NotFound, ProtocolError, RemoteError, Unavailable

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
XDS = "urn:ihe:iti:xds-b:2007"
IHERAD = "urn:ihe:rad:xdsi-b:2009"
ACTION = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
# The XDS repository to ask.  Servers that answer RAD-69 for their own archive
# (Vitrea among them) accept this value; it is not a real repository OID.
REPOSITORY_UID = "1.3.6.1.4.1000"
# Lossless transfer syntaxes only, so that a server never has to choose a
# lossy one; Explicit VR Little Endian first.
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

NOT_FOUND_CODES = frozenset({"XDSMissingDocument", "XDSDocumentUniqueIdError"})
BUSY_CODES = frozenset(
    {"XDSRegistryBusy", "XDSRepositoryBusy", "XDSRegistryOutOfResources", "XDSRepositoryOutOfResources"}
)


# --------------------------------------------------------------------------- request


def syntaxes_preferring(transfer_syntax: str) -> tuple[str, ...]:
    """The transfer syntaxes to name when ``transfer_syntax`` is wanted: it
    first, then the usual list (the server chooses; the caller checks)."""
    return (transfer_syntax, *(ts for ts in TRANSFER_SYNTAXES if ts != transfer_syntax))


def build_request(
    study_uid: str,
    series_uid: str,
    instance_uids: Iterable[str],
    to: str,
    transfer_syntaxes: tuple[str, ...] = TRANSFER_SYNTAXES,
) -> bytes:
    """The SOAP 1.2 RetrieveImagingDocumentSetRequest for objects of one series."""
    docs = "".join(
        "<ihe:DocumentRequest>"
        f"<ihe:RepositoryUniqueId>{REPOSITORY_UID}</ihe:RepositoryUniqueId>"
        f"<ihe:DocumentUniqueId>{escape(uid)}</ihe:DocumentUniqueId>"
        "</ihe:DocumentRequest>"
        for uid in instance_uids
    )
    syntaxes = "".join(f"<iherad:TransferSyntaxUID>{ts}</iherad:TransferSyntaxUID>" for ts in transfer_syntaxes)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{ACTION}</a:Action>'
        f"<a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>"
        f'<a:ReplyTo s:mustUnderstand="1"><a:Address>{WSA}/anonymous</a:Address></a:ReplyTo>'
        f"<a:To>{escape(to)}</a:To>"
        "</s:Header>"
        "<s:Body>"
        f'<iherad:RetrieveImagingDocumentSetRequest xmlns:iherad="{IHERAD}" xmlns:ihe="{XDS}">'
        f"<iherad:StudyRequest studyInstanceUID={quoteattr(study_uid)}>"
        f"<iherad:SeriesRequest seriesInstanceUID={quoteattr(series_uid)}>{docs}</iherad:SeriesRequest>"
        "</iherad:StudyRequest>"
        f"<iherad:TransferSyntaxUIDList>{syntaxes}</iherad:TransferSyntaxUIDList>"
        "</iherad:RetrieveImagingDocumentSetRequest>"
        "</s:Body>"
        "</s:Envelope>"
    ).encode()


# --------------------------------------------------------------------------- response envelope


@dataclass(frozen=True)
class RegistryError:
    code: str
    context: str = ""
    location: str = ""
    severity: str = ""

    @property
    def is_warning(self) -> bool:
        return self.severity.rsplit(":", 1)[-1].lower() == "warning"

    @property
    def short_code(self) -> str:
        """``XDSMissingDocument``, also when a server sends it as a URN."""
        return self.code.rsplit(":", 1)[-1]


@dataclass
class Envelope:
    """What a RetrieveDocumentSetResponse envelope says."""

    status: str = ""  # the last word of the status URN: Success, PartialSuccess, Failure
    documents: dict[str, str] = field(default_factory=dict)  # Content-ID -> DocumentUniqueId
    inline: dict[str, bytes] = field(default_factory=dict)  # DocumentUniqueId -> bytes sent base64 in the XML
    errors: list[RegistryError] = field(default_factory=list)
    fault: str | None = None  # "code: reason" of a SOAP Fault


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _descendants(elem: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in elem.iter() if _local(e.tag) == name]


def _text(elem: ET.Element | None) -> str:
    return "".join(elem.itertext()).strip() if elem is not None else ""


def cid_of(href: str) -> str:
    """The Content-ID a ``cid:`` URL names (RFC 2392: the URL is %-encoded)."""
    ref = href.strip()
    if ref[:4].lower() == "cid:":
        ref = ref[4:]
    return unquote(ref).strip("<>")


def parse_envelope(data: bytes) -> Envelope:
    """Read a SOAP envelope.  Elements are matched by local name, so SOAP 1.1
    faults and namespace variations are understood too.  Raises ValueError if
    ``data`` is not a SOAP envelope."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if _local(root.tag) != "Envelope":
        raise ValueError(f"not a SOAP envelope (root element <{_local(root.tag)}>)")
    body = _child(root, "Body")
    if body is None:
        raise ValueError("SOAP envelope without a Body")
    env = Envelope()
    fault = next(iter(_descendants(body, "Fault")), None)
    if fault is not None:
        env.fault = _fault_text(fault)
        return env
    for resp in _descendants(body, "RegistryResponse"):
        env.status = resp.get("status", "").rsplit(":", 1)[-1]
    for err in _descendants(body, "RegistryError"):
        env.errors.append(
            RegistryError(
                code=err.get("errorCode", "").strip() or "(no errorCode)",
                context=(err.get("codeContext") or _text(err)).strip(),
                location=err.get("location", "").strip(),
                severity=err.get("severity", "").strip(),
            )
        )
    for doc in _descendants(body, "DocumentResponse"):
        _read_document(doc, env)
    return env


def _read_document(doc: ET.Element, env: Envelope) -> None:
    uid = _text(_child(doc, "DocumentUniqueId"))
    content = _child(doc, "Document")
    if not uid or content is None:
        raise ValueError("DocumentResponse without DocumentUniqueId or Document")
    include = next((e for e in content if _local(e.tag) == "Include"), None)
    if include is not None:
        env.documents[cid_of(include.get("href", ""))] = uid
        return
    try:
        env.inline[uid] = base64.b64decode("".join(_text(content).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"Document of {uid} is neither an xop:Include nor base64") from None


def _fault_text(fault: ET.Element) -> str:
    # SOAP 1.2: Code/Value (+ Subcode/Value), Reason/Text; SOAP 1.1: faultcode, faultstring
    codes = [_text(v) for v in _descendants(fault, "Value")] or [_text(_child(fault, "faultcode"))]
    reason_el = _child(fault, "Reason")
    reason = _text(_child(reason_el, "Text")) if reason_el is not None else _text(_child(fault, "faultstring"))
    code = " / ".join(c for c in codes if c)
    return f"{code}: {reason}" if code and reason else code or reason or "(no reason given)"


# --------------------------------------------------------------------------- errors


def _objects(errors: list[RegistryError]) -> str:
    where = [e.location for e in errors if e.location]
    if not where:
        return ""
    shown = ", ".join(where[:5]) + (f" and {len(where) - 5} more" if len(where) > 5 else "")
    return f" for {shown}"


def describe_errors(errors: list[RegistryError]) -> tuple[type[RemoteError], str]:
    """The exception class and message for a RegistryErrorList: named after its
    first error code, listing the objects concerned (each error's ``location``)."""
    first = errors[0].short_code
    same = [e for e in errors if e.short_code == first]
    context = next((e.context for e in same if e.context), "")
    msg = f"{first}{_objects(same)}" + (f": {context}" if context else "")
    if len(same) < len(errors):
        others = sorted({e.short_code for e in errors} - {first})
        msg += f" (and {', '.join(others)})"
    if first in NOT_FOUND_CODES:
        return NotFound, msg
    if first in BUSY_CODES:
        return Unavailable, msg
    return ProtocolError, msg


def registry_error(errors: list[RegistryError], server: str, what: str) -> RemoteError:
    cls, msg = describe_errors(errors)
    return cls(msg, server=server, what=what)
