"""Authentication over real HTTP: HttpEndpoint + make_client against the login
servers of tests/servers/login.py (threads on loopback).

Every test also checks that no secret shows up in the log (at DEBUG, all
loggers, httpx and httpcore included) or in an error message."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from tests.servers.base import Request, Response, TestHTTPServer
from tests.servers.login import BasicCheck, KeycloakTokens, Routes, VitreaSessions, quick_server, resource_routes
from trolleyfs import config
from trolleyfs.endpoints import Server
from trolleyfs.errors import AccessDenied, ProtocolError, RemoteError, Unavailable
from trolleyfs.transport.auth import OAuth2ClientCredentials, VitreaAuth
from trolleyfs.transport.http import HttpEndpoint, iter_body
from trolleyfs.wiring import make_client

PASSWORD = "wonderland-pw-7781"
CLIENT_SECRET = "s3cr3t-client-4410"
TOKEN = "static-token-9e1c3b"
SECRETS = (PASSWORD, CLIENT_SECRET, TOKEN)


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for secret in SECRETS:
        assert secret not in caplog.text


@contextmanager
def serving(routes: Routes) -> Iterator[TestHTTPServer]:
    server = quick_server(routes).start()
    try:
        yield server
    finally:
        server.stop()


def server_config(url: str, auth: str, retries: int = 0) -> Server:
    text = f"""
[servers.pacs]
search = {{ protocol = "qido-rs", url = "{url}/api" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/api" }}
timeout = 5
retries = {retries}
auth = {auth}
"""
    return config.parse(text).servers["pacs"]


@asynccontextmanager
async def endpoint(url: str, auth: str, retries: int = 0) -> AsyncIterator[HttpEndpoint]:
    server = server_config(url, auth, retries)
    client = make_client(server)
    try:
        yield HttpEndpoint(server, f"{url}/api", client)
    finally:
        await client.aclose()


async def get(ep: HttpEndpoint, path: str = "/x") -> str:
    resp = await ep.request("GET", f"{ep.url}{path}", f"GET {path}")
    return resp.text


async def get_many(ep: HttpEndpoint, n: int, path: str = "/x") -> list[str]:
    out: list[str] = []

    async def one(i: int) -> None:
        out.append(await get(ep, f"{path}/{i}" if path == "/x" else path))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return out


def assert_clean(exc: BaseException) -> None:
    for secret in SECRETS:
        assert secret not in str(exc)
        assert secret not in repr(exc)


# --------------------------------------------------------------------------- vitrea


def vitrea_auth(url: str, sessions: VitreaSessions, password: str = PASSWORD, extra: str = "") -> str:
    return (
        f'{{ type = "vitrea", login_url = "{url}{sessions.login_path}", username = "alice", '
        f'password = "{password}"{extra} }}'
    )


@dataclass
class Vitrea:
    http: TestHTTPServer
    sessions: VitreaSessions

    @property
    def url(self) -> str:
        return self.http.url

    def auth(self, password: str = PASSWORD, extra: str = "") -> str:
        return vitrea_auth(self.url, self.sessions, password, extra)


@contextmanager
def vitrea(**kwargs: object) -> Iterator[Vitrea]:
    sessions = VitreaSessions(users={"alice": PASSWORD}, **kwargs)  # type: ignore[arg-type]
    with serving(sessions.protect_routes(resource_routes())) as http:
        yield Vitrea(http, sessions)


async def test_vitrea_logs_in_on_401_and_retries() -> None:
    with vitrea() as v:
        async with endpoint(v.url, v.auth()) as ep:
            assert await get(ep, "/a") == "ok /api/a"
            assert (v.sessions.logins, v.sessions.refused_requests) == (1, 1)
            assert await get(ep, "/b") == "ok /api/b"
            assert (v.sessions.logins, v.sessions.refused_requests) == (1, 1)
        sent = v.sessions.login_headers[0]
        assert sent["x-userid"] == "alice"
        assert sent["x-password"] == PASSWORD
        assert sent["x-realm"] == "DefaultSystemRealm"  # the default when the config gives none


async def test_vitrea_sends_configured_realm() -> None:
    with vitrea(realm="Radiology") as v:
        async with endpoint(v.url, v.auth(extra=', realm = "Radiology"')) as ep:
            assert await get(ep) == "ok /api/x"
        assert v.sessions.login_headers[0]["x-realm"] == "Radiology"


async def test_vitrea_logs_in_again_when_the_session_ends_after_n_requests() -> None:
    with vitrea(session_uses=3) as v:
        async with endpoint(v.url, v.auth()) as ep:
            for i in range(10):
                assert await get(ep, f"/{i}") == f"ok /api/{i}"
        # requests 1-3, 4-6, 7-9 and 10 each ran in their own session
        assert v.sessions.logins == 4
        assert v.sessions.refused_requests == 4
        assert v.sessions.failed_logins == 0


async def test_vitrea_logs_in_again_when_the_session_times_out() -> None:
    now = [0.0]  # the server's clock, moved by the test
    with vitrea(session_seconds=0.5, clock=lambda: now[0]) as v:
        async with endpoint(v.url, v.auth()) as ep:
            await get(ep)
            await get(ep)
            assert v.sessions.logins == 1
            now[0] += 0.6
            assert await get(ep) == "ok /api/x"
            assert v.sessions.logins == 2


async def test_vitrea_concurrent_requests_share_one_login() -> None:
    with vitrea(login_delay=0.3) as v:
        async with endpoint(v.url, v.auth()) as ep:
            got = await get_many(ep, 20)
            assert sorted(got) == sorted(f"ok /api/x/{i}" for i in range(20))
            assert v.sessions.logins == 1
            v.sessions.expire_all()
            got = await get_many(ep, 20)
            assert len(got) == 20
            assert v.sessions.logins == 2
            assert v.sessions.failed_logins == 0


async def test_vitrea_waiter_takes_over_when_the_login_task_is_cancelled() -> None:
    with vitrea(login_delay=0.5) as v:
        async with endpoint(v.url, v.auth()) as ep:
            auth = ep.client.auth
            assert isinstance(auth, VitreaAuth)
            leader = trio.CancelScope()
            results: dict[str, object] = {}

            async def first() -> None:
                with leader:
                    results["first"] = await get(ep, "/first")

            async def second() -> None:
                results["second"] = await get(ep, "/second")

            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(first)
                    await _until(lambda: v.sessions.logins_started == 1, "the first login")  # first is now logging in
                    nursery.start_soon(second)
                    await _until(
                        lambda: v.sessions.refused_requests == 2, "the second 401"
                    )  # second got its 401: it waits
                    leader.cancel()
            assert "first" not in results and leader.cancelled_caught
            assert results["second"] == "ok /api/second"
            assert auth._renewing is None
            assert await get(ep) == "ok /api/x"  # and the state is sound afterwards


@pytest.mark.parametrize("refuse_status", [401, 403])
async def test_vitrea_wrong_password_is_access_denied_without_retrying(refuse_status: int) -> None:
    with vitrea(refuse_status=refuse_status) as v:
        async with endpoint(v.url, v.auth(password="not-the-" + PASSWORD), retries=2) as ep:
            with pytest.raises(AccessDenied) as info:
                await get(ep)
            msg = str(info.value)
            assert f"{v.url}/login" in msg and "refused" in msg and "alice" in msg
            assert "not-the-" not in msg
            assert info.value.server == "pacs" and info.value.what
            assert v.sessions.failed_logins == 1
            # later requests fail at once, without another login attempt (no account lock-out)
            with pytest.raises(AccessDenied):
                await get(ep)
            results = []

            async def one() -> None:
                with pytest.raises(AccessDenied) as exc:
                    await get(ep)
                results.append(exc.value)

            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(one)
            assert len(results) == 10 and all(f"{v.url}/login" in str(e) for e in results)
            assert v.sessions.failed_logins == 1
            assert v.sessions.logins == 0
            for exc in [info.value, *results]:
                assert "not-the-" not in str(exc)
                assert_clean(exc)


async def test_vitrea_concurrent_wrong_password_tries_one_login() -> None:
    with vitrea(login_delay=0.2) as v:
        async with endpoint(v.url, v.auth(password="bad-" + PASSWORD)) as ep:
            errors: list[RemoteError] = []

            async def one() -> None:
                try:
                    await get(ep)
                except AccessDenied as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(one)
            assert len(errors) == 10
            assert v.sessions.failed_logins == 1


async def test_vitrea_request_is_retried_only_once_after_login() -> None:
    """A resource that refuses even a logged-in session: one login, one retry, then AccessDenied."""
    sessions = VitreaSessions(users={"alice": PASSWORD})
    routes = sessions.protect_routes(resource_routes())
    routes[("GET", "/api/forbidden")] = lambda req: Response(401, b"no")
    with serving(routes) as http:
        async with endpoint(http.url, vitrea_auth(http.url, sessions), retries=2) as ep:
            with pytest.raises(AccessDenied, match="HTTP 401"):
                await get(ep, "/forbidden")
            assert sessions.logins == 1
            assert sum(r.path == "/api/forbidden" for r in http.requests) == 2
            assert await get(ep) == "ok /api/x"  # the session itself is fine
            assert sessions.logins == 1


async def test_vitrea_post_body_is_sent_again_after_login() -> None:
    with vitrea() as v:
        async with endpoint(v.url, v.auth()) as ep:
            body = b"<soap>retrieve this</soap>" * 100
            resp = await ep.request(
                "POST",
                f"{ep.url}/echo",
                "echo",
                idempotent=False,
                content=body,
                headers={"Content-Type": "application/soap+xml"},
            )
            assert resp.content == body
            assert v.sessions.logins == 1


async def test_vitrea_streamed_request_logs_in() -> None:
    with vitrea() as v:
        async with endpoint(v.url, v.auth()) as ep:
            async with ep.stream("GET", f"{ep.url}/stream", "stream") as resp:
                data = b"".join([c async for c in iter_body(resp, "pacs", "stream", 5)])
            assert data == b"chunk1 chunk2"
            assert v.sessions.logins == 1


async def test_vitrea_follows_a_rotated_session_cookie() -> None:
    """A server may hand out a new session id on any answer; the old one then stops working."""
    sessions = VitreaSessions(users={"alice": PASSWORD})

    def rotate(req: Request) -> Response:
        sessions.expire_all()  # the old session id stops working ...
        return Response(200, b"rotated", headers={"Set-Cookie": sessions.issue_cookie()})  # ... for this one

    routes = sessions.protect_routes(resource_routes())
    routes[("GET", "/api/rotate")] = sessions.protect(rotate)
    with serving(routes) as http:
        async with endpoint(http.url, vitrea_auth(http.url, sessions)) as ep:
            assert await get(ep, "/rotate") == "rotated"
            assert sessions.logins == 1
            assert await get(ep) == "ok /api/x"
            assert sessions.logins == 1  # the rotated cookie was used, no second login


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (Response(404, b"<html><title>Not Found</title></html>", content_type="text/html"), ProtocolError, "404"),
        (Response(503, b"busy"), Unavailable, "503"),
    ],
)
async def test_vitrea_login_url_errors(answer: Response, error: type[RemoteError], text: str) -> None:
    sessions = VitreaSessions(users={"alice": PASSWORD})
    routes = sessions.protect_routes(resource_routes())
    routes[("POST", "/login")] = lambda req: answer
    with serving(routes) as http:
        async with endpoint(http.url, vitrea_auth(http.url, sessions)) as ep:
            with pytest.raises(error) as info:
                await get(ep)
            assert text in str(info.value) and f"{http.url}/login" in str(info.value)
            assert_clean(info.value)


# --------------------------------------------------------------------------- oauth2


@dataclass
class Keycloak:
    http: TestHTTPServer
    tokens: KeycloakTokens

    @property
    def url(self) -> str:
        return self.http.url

    def auth(self, secret: str = CLIENT_SECRET, extra: str = "") -> str:
        return (
            f'{{ type = "oauth2", token_url = "{self.url}{self.tokens.token_path}", client_id = "trolleyfs", '
            f'client_secret = "{secret}"{extra} }}'
        )


async def _until(condition: Callable[[], bool], what: str = "the server to get there") -> None:
    """Poll a server-side condition (generous bound: the machine may be slow and busy)."""
    with trio.move_on_after(60):
        while not condition():  # noqa: ASYNC110 (set by the server thread: nothing to wait on)
            await trio.sleep(0.01)
        return
    raise AssertionError(f"waited 60 s for {what}")


@contextmanager
def keycloak(**kwargs: object) -> Iterator[Keycloak]:
    tokens = KeycloakTokens(clients={"trolleyfs": CLIENT_SECRET}, **kwargs)  # type: ignore[arg-type]
    with serving(tokens.protect_routes(resource_routes())) as http:
        yield Keycloak(http, tokens)


async def test_oauth2_fetches_a_token_before_the_first_request_and_keeps_it() -> None:
    with keycloak() as k:
        async with endpoint(k.url, k.auth(extra=', scope = "dicom:read"')) as ep:
            assert await get(ep, "/a") == "ok /api/a"
            assert await get(ep, "/b") == "ok /api/b"
        assert k.tokens.token_requests == 1
        assert k.tokens.refused_requests == 0
        form = k.tokens.forms[0]
        assert form == {
            "grant_type": "client_credentials",
            "client_id": "trolleyfs",
            "client_secret": CLIENT_SECRET,
            "scope": "dicom:read",
        }


async def test_oauth2_without_scope_sends_none() -> None:
    with keycloak() as k:
        async with endpoint(k.url, k.auth()) as ep:
            await get(ep)
        assert "scope" not in k.tokens.forms[0]


async def test_oauth2_renews_the_token_before_it_expires(mock_clock: trio.testing.MockClock) -> None:
    # expires_in = 1 s: renewed 0.1 s (10 %) before.  The server accepts tokens for 5 s,
    # so a second token request can only come from the client renewing ahead of time.
    # trio's clock stands still but for the jumps below: only they age the token.
    with keycloak(expires_in=1, valid_for=5) as k:
        async with endpoint(k.url, k.auth()) as ep:
            await get(ep)
            mock_clock.jump(0.5)
            await get(ep)
            assert k.tokens.token_requests == 1
            mock_clock.jump(0.45)
            await get(ep)
            assert k.tokens.token_requests == 2
            assert k.tokens.refused_requests == 0  # renewed ahead, not after a 401


async def test_oauth2_refreshes_once_after_a_401() -> None:
    with keycloak() as k:
        async with endpoint(k.url, k.auth()) as ep:
            await get(ep)
            k.tokens.revoke_all()
            assert await get(ep) == "ok /api/x"
            assert (k.tokens.token_requests, k.tokens.refused_requests) == (2, 1)


async def test_oauth2_gives_up_after_one_refresh() -> None:
    tokens = KeycloakTokens(clients={"trolleyfs": CLIENT_SECRET})
    routes = tokens.protect_routes(resource_routes())
    routes[("GET", "/api/forbidden")] = lambda req: Response(401, b"")
    with serving(routes) as http:
        k = Keycloak(http, tokens)
        async with endpoint(k.url, k.auth(), retries=2) as ep:
            with pytest.raises(AccessDenied, match="HTTP 401"):
                await get(ep, "/forbidden")
            assert tokens.token_requests == 2
            assert sum(r.path == "/api/forbidden" for r in http.requests) == 2


async def test_oauth2_concurrent_requests_share_one_token_request() -> None:
    with keycloak(token_delay=0.3) as k:
        async with endpoint(k.url, k.auth()) as ep:
            got = await get_many(ep, 20)
            assert len(got) == 20
            assert k.tokens.token_requests == 1
            k.tokens.revoke_all()
            got = await get_many(ep, 20, "/slow")
            assert got == ["slow ok"] * 20
            assert k.tokens.token_requests == 2


async def test_oauth2_wrong_secret_is_access_denied_and_not_hammered() -> None:
    with keycloak() as k:
        async with endpoint(k.url, k.auth(secret="wrong-" + CLIENT_SECRET), retries=2) as ep:
            with pytest.raises(AccessDenied) as info:
                await get(ep)
            msg = str(info.value)
            assert f"{k.url}{k.tokens.token_path}" in msg
            assert "unauthorized_client" in msg and "trolleyfs" in msg
            assert "wrong-" not in msg
            assert_clean(info.value)
            for _ in range(3):
                with pytest.raises(AccessDenied):
                    await get(ep)
            assert k.tokens.token_requests == 1
            assert k.tokens.served_requests == 0


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (Response(200, b"<html>login</html>", content_type="text/html"), ProtocolError, "not JSON"),
        (Response(200, b'{"token_type": "Bearer"}', content_type="application/json"), ProtocolError, "access_token"),
        (
            Response(200, b'{"access_token": "x", "token_type": "mac"}', content_type="application/json"),
            ProtocolError,
            "Bearer",
        ),
        (Response(503, b"down"), Unavailable, "503"),
        (Response(400, b'{"error": "invalid_scope"}', content_type="application/json"), ProtocolError, "invalid_scope"),
    ],
)
async def test_oauth2_bad_token_answers(answer: Response, error: type[RemoteError], text: str) -> None:
    with keycloak(answer=answer) as k:
        async with endpoint(k.url, k.auth()) as ep:
            with pytest.raises(error, match=text) as info:
                await get(ep)
            assert info.value.server == "pacs"
            assert_clean(info.value)
            assert k.tokens.served_requests == 0


async def test_oauth2_auth_object_is_one_per_client() -> None:
    with keycloak() as k:
        server = server_config(k.url, k.auth())
        client = make_client(server)
        try:
            assert isinstance(client.auth, OAuth2ClientCredentials)
            assert CLIENT_SECRET not in repr(client.auth) and CLIENT_SECRET not in repr(server)
        finally:
            await client.aclose()


# --------------------------------------------------------------------------- bearer and basic


@pytest.fixture
def bearer_server() -> Iterator[tuple[TestHTTPServer, KeycloakTokens]]:
    tokens = KeycloakTokens(static_tokens=frozenset({TOKEN}))
    with serving(tokens.protect_routes(resource_routes())) as http:
        yield http, tokens


@pytest.mark.parametrize("source", ["inline", "env", "file"])
async def test_bearer_token_from_each_source(
    source: str, bearer_server: tuple[TestHTTPServer, KeycloakTokens], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    http, tokens = bearer_server
    if source == "inline":
        auth = f'{{ type = "bearer", token = "{TOKEN}" }}'
    elif source == "env":
        monkeypatch.setenv("TROLLEYFS_TEST_TOKEN", TOKEN)
        auth = '{ type = "bearer", token_env = "TROLLEYFS_TEST_TOKEN" }'
    else:
        path = tmp_path / "token"
        path.write_text(TOKEN + "\n")
        auth = f'{{ type = "bearer", token_file = "{path}" }}'
    async with endpoint(http.url, auth) as ep:
        assert await get(ep) == "ok /api/x"
        assert TOKEN not in repr(ep.client.auth) and TOKEN not in repr(ep.server)
    assert tokens.served_requests == 1 and tokens.token_requests == 0


async def test_bearer_wrong_token_is_access_denied(bearer_server: tuple[TestHTTPServer, KeycloakTokens]) -> None:
    http, tokens = bearer_server
    async with endpoint(http.url, '{ type = "bearer", token = "nope" }', retries=2) as ep:
        with pytest.raises(AccessDenied, match="HTTP 401"):
            await get(ep)
    assert tokens.refused_requests == 1


async def test_protect_server_in_place() -> None:
    """How a protocol test server (MintServer, Rad69Server.http) is put behind a login."""
    sessions = VitreaSessions(users={"alice": PASSWORD})
    tokens = KeycloakTokens(clients={"trolleyfs": CLIENT_SECRET})
    with serving(resource_routes()) as http:
        sessions.protect_server(http)
        async with endpoint(http.url, vitrea_auth(http.url, sessions)) as ep:
            assert await get(ep) == "ok /api/x"
        assert sessions.logins == 1
    with serving(resource_routes()) as http:
        tokens.protect_server(http)
        async with endpoint(http.url, Keycloak(http, tokens).auth()) as ep:
            assert await get(ep) == "ok /api/x"
        assert tokens.token_requests == 1
        http.routes = resource_routes()  # and the guard really was in the way:
        tokens.protect_server(http)
        async with endpoint(http.url, '{ type = "bearer", token = "wrong" }') as ep:
            with pytest.raises(AccessDenied):
                await get(ep)


async def test_basic_auth() -> None:
    check = BasicCheck(users={"alice": PASSWORD})
    with serving(check.protect_routes(resource_routes())) as http:
        async with endpoint(http.url, f'{{ type = "basic", username = "alice", password = "{PASSWORD}" }}') as ep:
            assert await get(ep) == "ok /api/x"
        async with endpoint(http.url, '{ type = "basic", username = "alice", password = "nope" }') as ep:
            with pytest.raises(AccessDenied) as info:
                await get(ep)
            assert_clean(info.value)
    assert check.refused_requests == 1
