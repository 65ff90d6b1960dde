"""The transport charging a server's limits, on trio's virtual clock: the
HTTP client (through httpx's transport seam) charges each request it sends
(each attempt) and each chunk of each body before reading the next,
streamed or not; a wait for the limits is not the server's silence (the
deadlines around it keep moving); bytes that arrive in a thread trio did not
start (pynetdicom's) are charged in the priority of the task that asked,
and their waits keep that task's deadline moving too."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import outcome
import trio
import trio.testing

from trolleyfs.endpoints import Server
from trolleyfs.idle import idle_deadline
from trolleyfs.limits.hours import Hours
from trolleyfs.limits.priority import Priority, priority
from trolleyfs.limits.server import ServerLimits, build_limits, receive_buffer
from trolleyfs.limits.settings import LimitsConfig
from trolleyfs.protocols import endpoint as Endpoint
from trolleyfs.transport.http import HttpEndpoint, build_client
from trolleyfs.transport.pace import ThreadCharge

URL = "http://pacs.example/dicom-web"
CHUNK = 250_000


def server(retries: int = 0) -> Server:
    return Server("pacs", Endpoint("qido-rs", url=URL), Endpoint("wado-rs", url=URL), timeout=5.0, retries=retries)


class Body(httpx.AsyncByteStream):
    """A body of ``n`` chunks; notes when each was pulled (virtual time)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled: list[float] = []

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.n):
            self.pulled.append(trio.current_time())
            yield b"x" * CHUNK


def client_of(limits: ServerLimits, answers: list[httpx.Response], retries: int = 0) -> HttpEndpoint:
    def answer(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    s = server(retries)
    return HttpEndpoint(s, URL, build_client(s, None, transport=httpx.MockTransport(answer), pace=limits.pace()))


async def test_each_attempt_is_a_request_and_each_chunk_is_charged_before_the_next_is_read(autojump_clock):
    limits = build_limits("pacs", LimitsConfig(mb_per_s=1.0))  # 1 MB/s, a burst of 1 MB
    body = Body(6)  # 1.5 MB
    ep = client_of(limits, [httpx.Response(503), httpx.Response(200, stream=body)], retries=1)
    resp = await ep.request("GET", f"{URL}/studies/1/instances/2", "instance 2")
    assert len(resp.content) == 6 * CHUNK
    assert limits.requests == 2 and limits.bytes == 6 * CHUNK  # the 503 was a request too
    # the burst covers four chunks; the fifth is pulled at once, charged, and the sixth waits for it
    start = body.pulled[0]
    assert [t - start for t in body.pulled][:5] == [0.0] * 5 and body.pulled[5] - start >= 0.25 - 1e-6
    assert limits.waited.rate > 0
    await ep.client.aclose()


async def test_a_streamed_body_is_charged_as_it_is_read(autojump_clock):
    limits = build_limits("pacs", LimitsConfig(mb_per_s=1.0))
    body = Body(12)  # 3 MB: 2 s beyond the burst
    ep = client_of(limits, [httpx.Response(200, stream=body)])
    start = trio.current_time()
    got = 0
    async with ep.stream("GET", f"{URL}/studies/1/series/2", "series 2") as resp:
        async for chunk in resp.aiter_raw():
            got += len(chunk)
    assert got == limits.bytes == 12 * CHUNK and trio.current_time() - start >= 1.75 - 1e-6
    await ep.client.aclose()


async def test_a_wait_for_the_limits_is_not_the_servers_silence(autojump_clock):
    limits = build_limits("pacs", LimitsConfig(requests_per_s=0.1))  # one request every 10 s
    ep = client_of(limits, [httpx.Response(200, content=b"{}") for _ in range(3)])
    with idle_deadline(2.0):  # as the FUSE operation's: far shorter than the waits
        for _ in range(3):
            await ep.request("GET", f"{URL}/studies", "study search")
    assert limits.requests == 3 and limits.waited.rate >= 19.0
    await ep.client.aclose()


async def test_a_thread_charge_keeps_the_priority_it_was_made_in_and_its_waits_move_the_askers_deadline(
    autojump_clock,
):
    limits = build_limits("pacs", LimitsConfig(mb_per_s=0.001))  # 1000 bytes a second, a burst of 1000
    with priority(Priority.PREFETCH):
        charge = ThreadCharge(limits.pace())  # made where the work starts, as C-GET and C-MOVE do
    done = trio.Event()

    async def as_from_a_thread() -> None:  # what charge() runs on the loop: outside the asker's context
        for _ in range(4):
            await charge.take(1000)
        done.set()

    async with trio.open_nursery() as nursery:
        with idle_deadline(0.5), charge.beacon.listening():  # the asker's wait, as cget's stream waits
            nursery.start_soon(as_from_a_thread)
            await done.wait()
    assert limits.bytes == 4000
    assert limits.waited.by_priority["prefetch"] >= 2.9 and limits.waited.by_priority["user"] == 0


async def test_a_thread_trio_did_not_start_charges_through_the_loop() -> None:
    limits = build_limits("pacs", LimitsConfig(mb_per_s=1000.0))
    charge = ThreadCharge(limits.pace())
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    outcomes: list[object] = []

    def pynetdicoms_thread() -> None:  # as a C-STORE handler: no context of ours
        for _ in range(4):
            charge.charge(1000)

    def finished(result: object) -> None:
        outcomes.append(result)
        token.run_sync_soon(done.set)

    trio.lowlevel.start_thread_soon(pynetdicoms_thread, finished)
    await done.wait()
    assert limits.bytes == 4000 and not isinstance(outcomes[0], outcome.Error)


def test_a_byte_rate_asks_for_a_small_receive_buffer_and_nothing_else_does():
    assert receive_buffer(None) is None
    assert receive_buffer(2_000_000) == 200_000  # a tenth of a second of the rate
    assert receive_buffer(1_000) == 64 * 1024 and receive_buffer(1e11) == 4 * 1024 * 1024
    assert build_limits("pacs", LimitsConfig(requests_per_s=5)).pace().receive_buffer is None
    hours = LimitsConfig(background_hours=Hours.parse("19:00-07:00"))
    assert build_limits("pacs", hours).pace().receive_buffer is None
