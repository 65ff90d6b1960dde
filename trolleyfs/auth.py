"""httpx.Auth for each ``auth.type``: basic, bearer, vitrea, oauth2."""

from __future__ import annotations

import httpx

from .config import Server


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def make_auth(server: Server) -> httpx.Auth | None:
    a = server.auth
    if a.type == "none":
        return None
    if a.type == "basic":
        assert a.username is not None and a.password is not None
        return httpx.BasicAuth(a.username, a.password.get())
    if a.type == "bearer":
        assert a.token is not None
        return BearerAuth(a.token.get())
    raise NotImplementedError(f"auth type {a.type} is not built yet")
