"""A streaming multipart/related parser, shared by WADO-RS and RAD69.

Bytes are fed as they arrive; whole parts come out as soon as the delimiter
after them has been seen.  Each byte is scanned a bounded number of times (the
search resumes where the last one stopped, less the delimiter's length), so a
large body costs linear time, and only the part being received is held.

A part is only ever returned once the delimiter after it arrived: a stream cut
in the middle of a part loses that part, and :meth:`MultipartParser.close`
reports the cut as an error.  A part whose own ``Content-Length`` disagrees
with its bytes is damaged (:meth:`Part.length_problem`): the protocols refuse it.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


class MultipartError(ValueError):
    """The body is not the multipart body it claims to be."""


@dataclass
class Part:
    """One part of a multipart body: its headers and its bytes."""

    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def content_id(self) -> str:
        return self.headers.get("content-id", "").strip().strip("<>")

    def length_problem(self) -> str | None:
        """Why the part is damaged, if it declares a ``Content-Length`` that its
        bytes do not have (the boundary came early or late); None if it declares
        none (dcm4chee sends none) or the right one."""
        declared = self.headers.get("content-length")
        if declared is None:
            return None
        try:
            length = int(declared.strip())
        except ValueError:
            return f"unreadable Content-Length {declared[:40]!r}"
        if length != len(self.body):
            return f"declares Content-Length {length} but holds {len(self.body)} bytes"
        return None


def content_type_params(content_type: str) -> tuple[str, dict[str, str]]:
    """``multipart/related; boundary="x"; type=...`` -> (media type, params)."""
    msg = email.message.Message()
    msg["content-type"] = content_type
    params = {k.lower(): v for k, v in (msg.get_params() or [])[1:]}
    return msg.get_content_type(), params


def boundary_of(content_type: str) -> bytes:
    media, params = content_type_params(content_type)
    if not media.startswith("multipart/"):
        raise MultipartError(f"expected a multipart body, got {content_type or 'no Content-Type'}")
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError(f"multipart Content-Type without boundary: {content_type}")
    return boundary.encode("latin-1")


_PREAMBLE, _HEADERS, _BODY, _DONE = range(4)
_PADDING = re.compile(rb"[ \t]*(\r\n)?")


class MultipartParser:
    """The incremental parser: :meth:`feed` bytes, take the parts that completed."""

    def __init__(self, boundary: bytes, max_header_bytes: int = 64 * 1024) -> None:
        self.delim = b"\r\n--" + boundary
        # the first delimiter may open the body without a CRLF before it
        self.buf = bytearray(b"\r\n")
        self.state = _PREAMBLE
        self.scan = 0
        self.headers: dict[str, str] = {}
        self.max_header_bytes = max_header_bytes
        self.parts_seen = 0

    def _take(self, n: int) -> bytes:
        """The first ``n`` buffered bytes as one copy (slicing a bytearray would copy twice)."""
        with memoryview(self.buf) as mv, mv[:n] as head:
            return bytes(head)

    def feed(self, data: bytes) -> list[Part]:  # noqa: C901 - one state machine, read in one place
        if self.state == _DONE:
            return []  # epilogue: ignored
        self.buf += data
        out: list[Part] = []
        while True:
            if self.state in (_PREAMBLE, _BODY):
                idx = self.buf.find(self.delim, self.scan)
                if idx < 0:
                    self.scan = max(0, len(self.buf) - len(self.delim) + 1)
                    if self.state == _PREAMBLE and len(self.buf) > self.max_header_bytes:
                        raise MultipartError("no multipart boundary found at the start of the body")
                    return out
                after = idx + len(self.delim)
                if len(self.buf) < after + 2:
                    self.scan = idx
                    return out
                if self.buf[after : after + 2] == b"--":
                    if self.state == _BODY:
                        out.append(Part(self.headers, self._take(idx)))
                        self.parts_seen += 1
                    self.state = _DONE
                    self.buf.clear()
                    return out
                # transport padding (spaces, tabs) may follow the boundary, then CRLF;
                # anything else means the boundary is a prefix of other text
                pad = _PADDING.match(self.buf, after)
                assert pad is not None  # the pattern matches the empty string
                if not pad.group(1):
                    rest = len(self.buf) - pad.end()
                    if rest == 0 or (rest == 1 and self.buf[-1] == 0x0D):
                        self.scan = idx  # the line is not complete yet
                        return out
                    self.scan = idx + 1  # not a delimiter after all
                    continue
                if self.state == _BODY:
                    out.append(Part(self.headers, self._take(idx)))
                    self.parts_seen += 1
                del self.buf[: pad.end()]
                self.state, self.scan = _HEADERS, 0
            elif self.state == _HEADERS:
                # a part with no headers at all: its body starts right after
                end = -2 if self.buf[:2] == b"\r\n" else self.buf.find(b"\r\n\r\n")
                if end == -1:
                    if len(self.buf) > self.max_header_bytes:
                        raise MultipartError("multipart part headers too long")
                    return out
                self.headers = _parse_headers(bytes(self.buf[: max(end, 0)]))
                del self.buf[: end + 4]
                self.state, self.scan = _BODY, 0

    def close(self) -> None:
        """Call at end of stream: raises if the body stopped before its end."""
        if self.state == _DONE:
            return
        if self.state == _PREAMBLE and self.parts_seen == 0:
            raise MultipartError("empty or non-multipart body (no boundary found)")
        raise MultipartError(f"multipart body ended before its closing boundary (after {self.parts_seen} whole parts)")


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = None
    for line in raw.decode("latin-1").split("\r\n"):
        if not line:
            continue
        if line[0] in " \t" and last:  # folded continuation
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError(f"bad multipart header line: {line[:80]!r}")
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers


async def iter_parts(chunks: AsyncIterable[bytes], boundary: bytes) -> AsyncIterator[Part]:
    parser = MultipartParser(boundary)
    async for chunk in chunks:
        for part in parser.feed(chunk):
            yield part
    parser.close()
