"""An HTTP proxy in front of a real server, for fault and counting tests.

It forwards every request to ``upstream`` and can, on demand: delay or stall
answers, answer 500, cut a body after N bytes, replace a body with garbage,
or refuse (close the connection).  It counts what passes through: requests,
and the body bytes sent back (``bytes_out``)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import httpx

from .base import Abort, Request, Response, TestHTTPServer


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay = 0.0  # seconds before answering
        self.stall = 0.0  # seconds to sleep in the middle of a body (reset() ends a stall early)
        self.stall_after = 0  # ... after this many body bytes
        self.fail_status: int | None = None  # answer this status instead
        self.fail_times: int | None = None  # ... for this many requests (None: until reset)
        self.cut_after: int | None = None  # cut bodies after this many bytes
        self.garbage = False  # replace bodies by the same number of junk bytes
        self.refuse = False  # drop the connection without an answer
        self.match = ""  # only requests whose path+query contain this are faulted
        self.match_re = ""  # ... and match this regular expression
        self.bytes_out = 0  # body bytes sent to clients
        self._wake = threading.Event()  # set by reset(): a stall in progress ends
        self.lock = threading.Lock()
        self.log: list[str] = []  # "METHOD path?query" of every request
        self.active = 0  # requests being answered now
        self.max_active = 0  # the most answered at once
        self.server = TestHTTPServer({("GET", "/"): self._forward, ("POST", "/"): self._forward})
        self.client = httpx.Client(timeout=120)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FaultProxy:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.client.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self.lock:
            self.delay = self.stall = 0.0
            self.fail_status = self.fail_times = self.cut_after = None
            self.garbage = self.refuse = False
            self.match = self.match_re = ""
            self.stall_after = 0
            self._wake.set()
            self._wake = threading.Event()

    def count(self, needle: str = "") -> int:
        with self.lock:
            return sum(1 for line in self.log if needle in line)

    def _faulty(self, target: str) -> bool:
        if self.match and self.match not in target:
            return False
        if self.match_re and not re.search(self.match_re, target):
            return False
        if self.fail_times is not None:
            if self.fail_times <= 0:
                return False
            self.fail_times -= 1
        return True

    def _forward(self, req: Request) -> Response:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return self._forward_counted(req)
        except BaseException:
            with self.lock:
                self.active -= 1
            raise

    def _done(self) -> None:
        with self.lock:
            self.active -= 1

    def _forward_counted(self, req: Request) -> Response:
        target = req.path + (f"?{req.raw_query}" if req.raw_query else "")
        with self.lock:
            self.log.append(f"{req.method} {target}")
            faulty = self._faulty(target)
            delay, stall, status, cut, garbage, refuse = (
                self.delay,
                self.stall,
                self.fail_status,
                self.cut_after,
                self.garbage,
                self.refuse,
            )
            stall_after, wake = self.stall_after, self._wake
        if not faulty:
            delay, stall, status, cut, garbage, refuse = 0.0, 0.0, None, None, False, False
        if delay:
            wake.wait(delay)  # reset() ends the wait
        if refuse:
            self._done()
            return Response(200, _aborted(), {}, "text/plain")
        if status is not None:
            self._done()
            return Response(status, b"<html><title>Error %d</title></html>" % status, {}, "text/html")
        headers = {
            k: v for k, v in req.headers.items() if k not in ("host", "content-length", "connection", "accept-encoding")
        }
        upstream = self.client.build_request(req.method, self.upstream + target, headers=headers, content=req.body)
        resp = self.client.send(upstream, stream=True)
        ctype = resp.headers.get("content-type", "application/octet-stream")
        passed = {k: v for k, v in resp.headers.items() if k.lower() in ("www-authenticate", "set-cookie")}
        return Response(
            resp.status_code,
            _body(resp, cut, garbage, (stall, stall_after, wake), self._done, self._sent),
            passed,
            ctype,
        )

    def _sent(self, n: int) -> None:
        with self.lock:
            self.bytes_out += n


def _aborted() -> Iterator[bytes]:
    raise Abort()
    yield b""  # pragma: no cover


def _body(resp: httpx.Response, cut: int | None, garbage: bool, stalling, done, count) -> Iterator[bytes]:
    stall, stall_after, wake = stalling
    sent = 0
    stalled = False
    try:
        for chunk in resp.iter_raw(65536):
            if garbage:
                chunk = bytes((i * 7 + 13) & 0xFF for i in range(len(chunk)))
            if cut is not None and sent + len(chunk) >= cut:
                count(cut - sent)
                yield chunk[: cut - sent]
                raise Abort()
            if stall and not stalled and sent >= stall_after:  # the rest of the body does not come (yet)
                stalled = True
                wake.wait(stall)
            sent += len(chunk)
            count(len(chunk))
            yield chunk
    finally:
        resp.close()
        done()
