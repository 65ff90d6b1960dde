"""The streaming multipart/related parser (trolleyfs/multipart.py).

Every body is parsed whole, one byte at a time, in random chunk sizes and split
at every position, and must always give the same parts: a part may only come
out whole, once the delimiter after it has arrived."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest

from trolleyfs.multipart import (
    MultipartError,
    MultipartParser,
    Part,
    boundary_of,
    content_type_params,
    iter_parts,
)

B = b"----=_Part_1_1788103738.1647962762356"
Chunker = Callable[[bytes], Iterator[bytes]]


def build(
    parts: Sequence[tuple[Mapping[str, str] | None, bytes]],
    boundary: bytes = B,
    preamble: bytes = b"",
    epilogue: bytes = b"\r\n",
    padding: bytes = b"",
) -> bytes:
    """A multipart body; ``None`` headers make a part without a header block.
    ``padding`` is transport padding after each delimiter (RFC 2046 5.1.1)."""
    out = bytearray(preamble + b"\r\n" if preamble else b"")
    for headers, body in parts:
        out += b"--" + boundary + padding + b"\r\n"
        for k, v in (headers or {}).items():
            out += f"{k}: {v}\r\n".encode()
        out += b"\r\n" + body + b"\r\n"
    out += b"--" + boundary + b"--" + padding + epilogue
    return bytes(out)


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def bytewise(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def random_sizes(seed: int) -> Chunker:
    def chunks(data: bytes) -> Iterator[bytes]:
        rng = random.Random(seed)
        i = 0
        while i < len(data):
            n = rng.choice([1, 2, 3, 5, 7, 13, 40, 41, 100, 1000])
            yield data[i : i + n]
            i += n

    chunks.__name__ = f"random{seed}"
    return chunks


CHUNKERS: list[Chunker] = [whole, bytewise, *(random_sizes(s) for s in range(6))]


def parse(data: bytes, chunker: Chunker = whole, boundary: bytes = B) -> list[Part]:
    parser = MultipartParser(boundary)
    out: list[Part] = []
    for chunk in chunker(data):
        out += parser.feed(chunk)
    parser.close()
    return out


def splits(data: bytes) -> Iterator[list[bytes]]:
    """The body cut in two at every position, and in three around every position."""
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    for i in range(len(data)):
        yield [data[:i], data[i : i + 3], data[i + 3 :]]


def parse_pieces(pieces: list[bytes], boundary: bytes = B) -> list[Part]:
    parser = MultipartParser(boundary)
    out: list[Part] = []
    for piece in pieces:
        out += parser.feed(piece)
    parser.close()
    return out


def bodies(parts: list[Part]) -> list[bytes]:
    return [p.body for p in parts]


def every_way(data: bytes) -> Iterator[tuple[str, list[Part]]]:
    """``data`` parsed whole, byte by byte, and split at every position."""
    yield "whole", parse(data)
    yield "bytewise", parse(data, bytewise)
    for pieces in splits(data):
        yield f"split {[len(p) for p in pieces]}", parse_pieces(pieces)


# --------------------------------------------------------------------------- the basics

TWO = [
    ({"Content-Type": 'application/xop+xml; type="application/soap+xml"', "Content-ID": "<root@x>"}, b"<env/>"),
    ({"Content-Type": "application/dicom", "Content-ID": "<a@b>"}, b"DICM\x00\r\n\x01--\r\n-"),
]


@pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.__name__)
def test_two_parts(chunker):
    parts = parse(build(TWO), chunker)
    assert bodies(parts) == [b"<env/>", b"DICM\x00\r\n\x01--\r\n-"]
    assert parts[0].content_type == "application/xop+xml" and parts[0].content_id == "root@x"
    assert parts[1].headers == {"content-type": "application/dicom", "content-id": "<a@b>"}
    assert parts[1].content_id == "a@b"


def test_every_split_point():
    data = build(TWO, preamble=b"preamble")
    for pieces in splits(data):
        assert bodies(parse_pieces(pieces)) == [b"<env/>", b"DICM\x00\r\n\x01--\r\n-"], pieces


@pytest.mark.parametrize("seed", range(20))
def test_random_binary_parts_random_chunks(seed):
    rng = random.Random(seed)
    alphabet = b"\r\n-=_abc\x00\xff" + B[:6]  # rich in near-delimiters
    parts = [
        ({"Content-ID": f"<{i}>"}, bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 400))))
        for i in range(rng.randint(1, 6))
    ]
    data = build(parts)
    assert bodies(parse(data, random_sizes(seed))) == [b for _, b in parts]


# --------------------------------------------------------------------------- text that looks like a boundary

LOOKALIKES = [
    b"--" + B + b" not at the start of a line",
    b"x\r\n--" + B[:-1] + b"\r\nshorter than the boundary",
    b"x\n--" + B + b"\nLF only, not CRLF",
    b"--" + B,
]
# the boundary followed by other text on the same line: not a delimiter
PREFIX_OF_LONGER = b"x\r\n--" + B + b"X and more text\r\n"


@pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.__name__)
def test_boundary_like_text_in_bodies(chunker):
    parts = [({"A": str(i)}, body) for i, body in enumerate(LOOKALIKES)]
    assert bodies(parse(build(parts), chunker)) == LOOKALIKES


def test_boundary_prefix_of_longer_text_whole():
    assert bodies(parse(build([({"A": "1"}, PREFIX_OF_LONGER), ({"A": "2"}, b"two")]))) == [PREFIX_OF_LONGER, b"two"]


def test_boundary_prefix_of_longer_text_chunked():
    """Also when the feed stops right after the boundary-like text, before the end of its line."""
    data = build([({"A": "1"}, PREFIX_OF_LONGER), ({"A": "2"}, b"two")])
    cut = data.index(B + b"X") + len(B) + 3
    parser = MultipartParser(B)
    assert parser.feed(data[:cut]) == []  # nothing is whole yet
    for how, parts in every_way(data):
        assert bodies(parts) == [PREFIX_OF_LONGER, b"two"], how


def test_a_boundary_that_is_a_prefix_of_another():
    """Parts of an inner multipart with boundary B + "x" do not end the outer parts."""
    inner = build([({"A": "in"}, b"inner")], boundary=B + b"xyz")
    assert bodies(parse(build([({"A": "1"}, inner), ({"A": "2"}, b"")]))) == [inner, b""]


# --------------------------------------------------------------------------- padding, preamble, epilogue


def test_transport_padding_whole():
    data = build(TWO, padding=b" \t ")
    assert bodies(parse(data)) == [b for _, b in TWO]


def test_transport_padding_chunked():
    data = build(TWO, padding=b" \t ")
    for how, parts in every_way(data):
        assert bodies(parts) == [b for _, b in TWO], how


@pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.__name__)
def test_preamble_and_epilogue_are_ignored(chunker):
    preamble = b"This is a multi-part message in MIME format.\r\n--" + B + b"X not yet\r\nx --" + B
    epilogue = b"\r\nepilogue\r\n--" + B + b"\r\nContent-Type: text/plain\r\n\r\nnot a part\r\n--" + B + b"--\r\n"
    data = build(TWO, preamble=preamble, epilogue=epilogue)
    assert bodies(parse(data, chunker)) == [b for _, b in TWO]


def test_no_parts():
    assert parse(b"--" + B + b"--\r\n") == []


def test_epilogue_feeds_after_the_end_are_ignored():
    parser = MultipartParser(B)
    assert bodies(parser.feed(build(TWO))) == [b for _, b in TWO]
    assert parser.feed(b"--" + B + b"\r\n\r\nmore\r\n--" + B + b"--") == []
    parser.close()


# --------------------------------------------------------------------------- empty parts, headers


@pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.__name__)
def test_empty_parts(chunker):
    parts = [({"A": "1"}, b""), ({"A": "2"}, b"x"), ({"A": "3"}, b""), ({"A": "4"}, b"\r\n")]
    got = parse(build(parts), chunker)
    assert bodies(got) == [b"", b"x", b"", b"\r\n"]
    assert [p.headers["a"] for p in got] == ["1", "2", "3", "4"]


def test_part_without_headers_at_the_end():
    for how, parts in every_way(build([({"A": "1"}, b"first"), (None, b"no headers")])):
        assert bodies(parts) == [b"first", b"no headers"] and parts[1].headers == {}, how


def test_parts_without_headers():
    parts = [(None, b"no headers"), (None, b""), ({"A": "1"}, b"after")]
    for how, got in every_way(build(parts)):
        assert bodies(got) == [b"no headers", b"", b"after"], how
        assert got[0].headers == {} and got[1].headers == {}, how


def test_part_without_headers_whose_body_has_a_blank_line():
    """The body's own blank line must not be taken as the end of headers."""
    body = b"line one\r\n\r\nline two"
    for how, parts in every_way(build([(None, body)])):
        assert bodies(parts) == [body], how


def test_header_parsing():
    raw = (
        b"--" + B + b"\r\nContent-Type: multipart/related;\r\n\tboundary=inner\r\nX-Empty:\r\n"
        b"content-ID:  <spaced>  \r\n\r\nbody\r\n--" + B + b"--"
    )
    (part,) = parse(raw)
    assert part.headers == {
        "content-type": "multipart/related; boundary=inner",
        "x-empty": "",
        "content-id": "<spaced>",
    }
    assert part.content_type == "multipart/related" and part.content_id == "spaced"


def test_bad_header_line_is_an_error():
    with pytest.raises(MultipartError, match="header"):
        parse(b"--" + B + b"\r\nno colon here\r\n\r\nbody\r\n--" + B + b"--")


def test_endless_headers_are_an_error():
    parser = MultipartParser(B, max_header_bytes=1000)
    parser.feed(b"--" + B + b"\r\n")
    with pytest.raises(MultipartError, match="too long"):
        for _ in range(100):
            parser.feed(b"X-Header: " + b"v" * 50 + b"\r\n")


# --------------------------------------------------------------------------- truncated and bad streams


def test_truncated_at_every_position():
    """Cut anywhere before the close delimiter is whole: close() raises, and
    every part returned before it is a whole part."""
    expected = [b for _, b in TWO]
    data = build(TWO, preamble=b"pre")
    end = data.index(b"--" + B + b"--") + len(B) + 4
    for cut in range(end):
        parser = MultipartParser(B)
        got = parser.feed(data[:cut])
        with pytest.raises(MultipartError):
            parser.close()
        assert bodies(got) == expected[: len(got)], cut
    for cut in range(end, len(data) + 1):
        assert bodies(parse(data[:cut])) == expected


def test_truncated_bytewise_never_returns_a_partial_part():
    expected = [b for _, b in TWO]
    data = build(TWO)
    cut = data.index(b"\x01--")  # inside the second part's body
    parser = MultipartParser(B)
    got = []
    for b in bytewise(data[:cut]):
        got += parser.feed(b)
    assert bodies(got) == expected[:1]
    with pytest.raises(MultipartError, match="after 1 whole parts"):
        parser.close()


@pytest.mark.parametrize("data", [b"", b"<html><body>Internal error</body></html>", b"--other\r\n\r\nx\r\n--other--"])
def test_not_multipart(data):
    with pytest.raises(MultipartError, match="no boundary"):
        parse(data)


def test_long_preamble_without_boundary_is_an_error():
    parser = MultipartParser(B, max_header_bytes=1000)
    with pytest.raises(MultipartError, match="no multipart boundary"):
        for _ in range(100):
            parser.feed(b"x" * 100)


# --------------------------------------------------------------------------- Content-Type


@pytest.mark.parametrize(
    ("ctype", "boundary"),
    [
        ('multipart/related; type="application/xop+xml"; boundary="' + B.decode() + '"; start="<r@x>"', B),
        ("multipart/related; boundary=abc; type=application/dicom", b"abc"),
        ('Multipart/Related;Boundary="a b"', b"a b"),
    ],
)
def test_boundary_of(ctype, boundary):
    assert boundary_of(ctype) == boundary


@pytest.mark.parametrize("ctype", ["application/soap+xml; charset=utf-8", "", "multipart/related; type=x"])
def test_boundary_of_refuses(ctype):
    with pytest.raises(MultipartError):
        boundary_of(ctype)


def test_content_type_params():
    media, params = content_type_params('multipart/related; type="application/xop+xml"; START="<a>"')
    assert media == "multipart/related" and params == {"type": "application/xop+xml", "start": "<a>"}


# --------------------------------------------------------------------------- iter_parts


async def _agen(chunks: Iterator[bytes]):
    for c in chunks:
        yield c


async def test_iter_parts():
    got = [p async for p in iter_parts(_agen(random_sizes(9)(build(TWO))), B)]
    assert bodies(got) == [b for _, b in TWO]


async def test_iter_parts_truncated():
    data = build(TWO)
    got = []
    with pytest.raises(MultipartError):
        async for p in iter_parts(_agen(whole(data[: data.index(b"\x01--")])), B):
            got.append(p)
    assert bodies(got) == [b"<env/>"]


# --------------------------------------------------------------------------- linear work


class CountingBuffer(bytearray):
    """The parser's buffer, counting the bytes its searches examine."""

    scanned = 0
    searches = 0

    def find(self, sub, start=None, end=None):
        idx = super().find(sub, start, end)
        begin = 0 if start is None else start
        stop = len(self) if idx < 0 else idx + len(sub)
        CountingBuffer.scanned += max(0, stop - begin)
        CountingBuffer.searches += 1
        return idx


def _big_body(total: int, part_size: int, seed: int = 0) -> tuple[bytes, list[bytes]]:
    rng = random.Random(seed)
    bodies_: list[bytes] = []
    # random bytes plus runs of near-delimiters, the worst realistic content
    tricky = (b"\r\n--" + B[:-3]) * 50
    while sum(map(len, bodies_)) < total:
        bodies_.append(rng.randbytes(part_size - len(tricky)) + tricky)
    return build([({"Content-Type": "application/dicom"}, b) for b in bodies_]), bodies_


def _parse_counting(data: bytes, chunk: int) -> tuple[int, int, int]:
    """(bytes scanned, largest buffer, parts) for ``data`` fed in ``chunk`` bytes."""
    CountingBuffer.scanned = CountingBuffer.searches = 0
    parser = MultipartParser(B)
    parser.buf = CountingBuffer(parser.buf)
    largest = n = 0
    for i in range(0, len(data), chunk):
        n += len(parser.feed(data[i : i + chunk]))
        assert type(parser.buf) is CountingBuffer, "the parser replaced its buffer: update this test"
        largest = max(largest, len(parser.buf))
    parser.close()
    assert CountingBuffer.searches > 0
    return CountingBuffer.scanned, largest, n


def test_20mb_in_64k_chunks_is_linear_work_and_holds_one_part():
    data, parts = _big_body(20 * 2**20, 2 * 2**20)
    scanned, largest, n = _parse_counting(data, 64 * 1024)
    assert n == len(parts)
    # each byte examined about once (plus a delimiter's length per chunk)
    assert scanned <= 1.5 * len(data) + (len(data) // (64 * 1024) + 1) * 2 * (len(B) + 4)
    # only the part being received is held (plus one chunk)
    assert largest <= max(map(len, parts)) + 64 * 1024 + 1024


def test_bytewise_feeding_is_linear_work():
    data, parts = _big_body(100_000, 20_000)
    scanned, _, n = _parse_counting(data, 1)
    assert n == len(parts)
    # each feed re-examines at most a delimiter's length of what it already had
    assert scanned <= len(data) * 2 * (len(B) + 4)


# --------------------------------------------------------------------------- a part's own Content-Length


@pytest.mark.parametrize(
    ("headers", "body", "problem"),
    [
        ({}, b"abcd", None),  # no Content-Length (dcm4chee): nothing to check
        ({"content-length": "4"}, b"abcd", None),
        ({"content-length": " 4 "}, b"abcd", None),
        ({"content-length": "8"}, b"abcd", "declares Content-Length 8 but holds 4 bytes"),
        ({"content-length": "2"}, b"abcd", "declares Content-Length 2 but holds 4 bytes"),
        ({"content-length": "four"}, b"abcd", "unreadable Content-Length 'four'"),
    ],
)
def test_a_part_whose_declared_length_disagrees_is_damaged(headers, body, problem):
    assert Part(headers, body).length_problem() == problem
