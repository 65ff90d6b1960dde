"""The WSGI application (WsgiDAV over the tree) and the HTTP server that runs
it (cheroot, with TLS when configured).

Why WsgiDAV and cheroot: WsgiDAV is the maintained Python WebDAV server
(PROPFIND, its XML and quirks of Windows' and macOS' clients, Range,
conditional requests), and cheroot its usual HTTP server with TLS.  Both are
threaded; the core is trio.  No WebDAV library for trio exists, and the
async ones (for asyncio) would need a second event loop beside trio's and a
bridge all the same, so the threads stay, each request in one worker thread
that waits for its own call into the core (:mod:`.bridge`).

WsgiDAV's pieces used: its error printer, its Basic authenticator with our
domain controller (:mod:`.auth`), the request resolver and request server;
not used: the directory browser (GET of a folder is 403), locks and dead
properties (read-only class 1), CORS, Digest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from wsgidav.error_printer import ErrorPrinter
from wsgidav.http_authenticator import HTTPAuthenticator
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from ..credentials import Secret
from .auth import CONFIG_KEY, AuthHeaderGuard, UsersDomainController
from .gate import Counts, Gate, WsgiApp, in_front
from .propfind import QuietStreamed
from .resources import TreeProvider
from .settings import WebdavConfig

log = logging.getLogger("trolleyfs.webdav")
BLOCK_SIZE = 256 * 1024  # bytes per write of a GET's body
IDLE_TIMEOUT_S = 60  # a connection that sends nothing for this long is closed
SHUTDOWN_WAIT_S = 10  # at stop, requests in progress get this long to finish


def build_app(provider: TreeProvider, users: Mapping[str, Secret], counts: Counts) -> WsgiApp:
    config: dict[str, Any] = {
        "provider_mapping": {"/": provider},
        "mount_path": None,
        "middleware_stack": [ErrorPrinter, AuthHeaderGuard, HTTPAuthenticator, Gate, RequestResolver],
        "http_authenticator": {
            "domain_controller": UsersDomainController,
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
            "trusted_auth_header": None,
        },
        "lock_storage": None,  # read-only, class 1: no locks
        "property_manager": None,  # no dead properties
        "dir_browser": {"enable": False},
        "block_size": BLOCK_SIZE,
        "suppress_version_info": True,
        "add_header_MS_Author_Via": True,
        "verbose": 3,  # one line per request, at INFO (our "wsgidav" logger shows them at debug)
        "logging": {"enable": False},  # our logging set-up, not WsgiDAV's
        CONFIG_KEY: {"users": dict(users), "counts": counts},
    }
    app_log = logging.getLogger("wsgidav.wsgidav_app")
    if not any(isinstance(f, QuietStreamed) for f in app_log.filters):
        app_log.addFilter(QuietStreamed())
    lib = logging.getLogger("wsgidav")
    level = lib.level
    lib.setLevel(logging.ERROR)  # its start-up advice (anonymous share, Basic without TLS) is ours to give
    try:
        return in_front(WsgiDAVApp(config))
    finally:
        lib.setLevel(level)


class _Server(wsgi.Server):
    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        # cheroot's own messages (TLS handshakes that fail, sockets reset) go to our log
        logging.getLogger("trolleyfs.webdav.http").log(level, "%s", msg, exc_info=traceback)


def build_server(app: WsgiApp, wd: WebdavConfig) -> wsgi.Server:
    server = _Server(
        (wd.listen.host, wd.listen.port),
        app,
        numthreads=wd.threads,
        max=wd.threads,
        server_name="trolleyfs",
        timeout=IDLE_TIMEOUT_S,
        shutdown_timeout=SHUTDOWN_WAIT_S,
        request_queue_size=64,
    )
    if wd.tls_cert and wd.tls_key:
        server.ssl_adapter = BuiltinSSLAdapter(wd.tls_cert, wd.tls_key)
    return server
