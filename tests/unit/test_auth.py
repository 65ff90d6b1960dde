"""Unit tests of trolleyfs.transport.auth: the factory, secret hiding, cookie handling,
token lifetimes and the one-renewal-at-a-time machinery (no network; the HTTP
behaviour is in tests/integration/test_auth.py)."""

from __future__ import annotations

import httpx
import pytest
import trio

from trolleyfs import config
from trolleyfs.credentials import Secret
from trolleyfs.endpoints import Server
from trolleyfs.errors import AccessDenied, ProtocolError
from trolleyfs.transport.auth import (
    BearerAuth,
    OAuth2ClientCredentials,
    VitreaAuth,
    _cookie_header,
    _RenewingAuth,
    _scrub,
    _set_cookies,
    make_auth,
)

SECRET = "pw-do-not-show-5521"


def server_with(auth: str) -> Server:
    text = f"""
[servers.pacs]
search = {{ protocol = "qido-rs", url = "http://127.0.0.1:9/api" }}
retrieve = {{ protocol = "wado-rs", url = "http://127.0.0.1:9/api" }}
auth = {auth}
"""
    return config.parse(text).servers["pacs"]


AUTHS = {
    "basic": f'{{ type = "basic", username = "alice", password = "{SECRET}" }}',
    "bearer": f'{{ type = "bearer", token = "{SECRET}" }}',
    "vitrea": f'{{ type = "vitrea", login_url = "https://pacs/login", username = "alice", password = "{SECRET}" }}',
    "oauth2": (
        f'{{ type = "oauth2", token_url = "https://kc/realms/r/protocol/openid-connect/token", '
        f'client_id = "fs", client_secret = "{SECRET}", scope = "read" }}'
    ),
}


def test_make_auth_none() -> None:
    assert make_auth(server_with('{ type = "none" }')) is None


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("basic", httpx.BasicAuth), ("bearer", BearerAuth), ("vitrea", VitreaAuth), ("oauth2", OAuth2ClientCredentials)],
)
def test_make_auth_builds_each_type_without_showing_the_secret(kind: str, cls: type) -> None:
    server = server_with(AUTHS[kind])
    auth = make_auth(server)
    assert isinstance(auth, cls)
    assert SECRET not in repr(auth) and SECRET not in str(auth)
    assert SECRET not in repr(server) and SECRET not in repr(server.auth)


def test_vitrea_settings() -> None:
    auth = make_auth(server_with(AUTHS["vitrea"]))
    assert isinstance(auth, VitreaAuth)
    assert (auth.login_url, auth.username, auth.realm) == ("https://pacs/login", "alice", "DefaultSystemRealm")
    assert auth.what == "login at https://pacs/login"
    text = AUTHS["vitrea"].replace(" }", ', realm = "Cardio" }')
    auth = make_auth(server_with(text))
    assert isinstance(auth, VitreaAuth) and auth.realm == "Cardio"


@pytest.mark.parametrize("kind", ["vitrea", "oauth2"])
def test_renewing_auths_need_the_async_client(kind: str) -> None:
    with (
        httpx.Client(auth=make_auth(server_with(AUTHS[kind]))) as client,
        pytest.raises(RuntimeError, match="AsyncClient"),
    ):
        client.get("http://127.0.0.1:9/")


def test_set_cookies_reads_every_header_and_deletions() -> None:
    resp = httpx.Response(
        200,
        headers=[
            ("Set-Cookie", "JSESSIONID=abc123; Path=/; Secure; HttpOnly"),
            ("Set-Cookie", "other=x=y; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
            ("Set-Cookie", "old=; Max-Age=0"),
            ("Set-Cookie", "garbage"),
        ],
    )
    assert _set_cookies(resp) == {"JSESSIONID": "abc123", "other": "x=y", "old": None}


def test_cookie_header_replaces_same_named_cookies() -> None:
    assert _cookie_header(None, {"JSESSIONID": "new"}) == "JSESSIONID=new"
    assert _cookie_header("a=1; JSESSIONID=old", {"JSESSIONID": "new"}) == "a=1; JSESSIONID=new"


def test_scrub() -> None:
    assert _scrub(f"echo {SECRET}!", Secret(SECRET), None, Secret("")) == "echo ***!"


def _token_answer(body: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("POST", "https://kc/token"))


def _oauth() -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials("pacs", "https://kc/token", "fs", Secret(SECRET))


@pytest.mark.parametrize(
    ("expires_in", "renew_after"),
    [(300, 270.0), (10, 9.0), ("300", 270.0), (1, 0.9), (None, None), (0, None), (True, None), ("soon", None)],
)
async def test_token_is_renewed_30s_or_10pc_before_expiry(expires_in: object, renew_after: float | None) -> None:
    auth = _oauth()
    assert auth._wants_renewal()  # no token yet
    auth._renewal_request(httpx.Request("GET", "https://pacs/x"))  # notes when it was asked
    asked = auth._asked_at
    body = {"access_token": "tok", "token_type": "bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in  # type: ignore[assignment]
    auth._accept(_token_answer(body))
    if renew_after is None:
        assert auth._renew_at is None
    else:
        assert auth._renew_at == pytest.approx(asked + renew_after)
    request = httpx.Request("GET", "https://pacs/x")
    auth._apply(request)
    assert request.headers["Authorization"] == "Bearer tok"


async def test_token_request_is_a_form_post() -> None:
    auth = OAuth2ClientCredentials("pacs", "https://kc/token", "fs", Secret(SECRET), scope="a b")
    req = auth._renewal_request(httpx.Request("GET", "https://pacs/x"))
    assert req.method == "POST" and str(req.url) == "https://kc/token"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(pair.split("=", 1) for pair in req.content.decode().split("&"))
    assert form == {"grant_type": "client_credentials", "client_id": "fs", "client_secret": SECRET, "scope": "a+b"}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"token_type": "Bearer"}, "no access_token"),
        ({"access_token": ""}, "no access_token"),
        ({"access_token": "t", "token_type": "DPoP"}, "not Bearer"),
        (["access_token"], "not a JSON object"),
    ],
)
async def test_bad_token_answers_are_protocol_errors(body: object, match: str) -> None:
    with pytest.raises(ProtocolError, match=match) as info:
        _oauth()._accept(_token_answer(body))
    assert info.value.server == "pacs" and info.value.what == "token request to https://kc/token"


async def test_refused_token_names_the_error_but_not_the_secret() -> None:
    answer = _token_answer({"error": "invalid_client", "error_description": f"bad secret {SECRET}"}, 401)
    with pytest.raises(AccessDenied) as info:
        _oauth()._accept(answer)
    assert "invalid_client" in str(info.value) and "'fs'" in str(info.value)
    assert SECRET not in str(info.value)


class _Counting(_RenewingAuth):
    """The renewal machinery alone: a credential that is a number."""

    def __init__(self) -> None:
        super().__init__("pacs", "renewal", refusal_cooldown=10)


async def test_one_renewal_at_a_time_and_waiters_reuse_it() -> None:
    auth = _Counting()
    outcomes: list[bool] = []

    async def waiter() -> None:
        outcomes.append(await auth._take_turn(0))

    assert await auth._take_turn(0)  # this task renews
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(waiter)
        await trio.sleep(0.01)
        assert outcomes == []  # all waiting
        auth.generation += 1  # the renewal succeeded
        auth._end_turn()
    assert outcomes == [False] * 5
    assert auth._renewing is None


async def test_a_waiter_takes_over_when_the_renewal_did_not_happen() -> None:
    auth = _Counting()
    outcomes: list[bool] = []

    async def waiter() -> None:
        outcomes.append(await auth._take_turn(0))
        if outcomes[-1]:
            auth.generation += 1
            auth._end_turn()

    assert await auth._take_turn(0)
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await trio.sleep(0.01)
        auth._end_turn()  # e.g. the leader was cancelled: no new generation
    assert sorted(outcomes) == [False, False, True]


async def test_a_refusal_is_repeated_during_the_cooldown(autojump_clock: trio.abc.Clock) -> None:
    auth = _Counting()
    refused = httpx.Response(403, text="no", request=httpx.Request("POST", "https://pacs/login"))

    def accept(response: httpx.Response) -> None:
        raise auth._status_error(response, " (check the password)")

    auth._accept = accept  # type: ignore[method-assign]
    with pytest.raises(AccessDenied, match="refused: HTTP 403 Forbidden: no"):
        auth._accept_or_refuse(refused)
    with pytest.raises(AccessDenied, match=r"HTTP 403 .*check the password.*not retried for 10 s") as info:
        await auth._take_turn(0)
    assert str(info.value).startswith("pacs: renewal: refused")
    await trio.sleep(10)
    assert await auth._take_turn(0)  # after the cooldown, try again
