"""Serving the application with uvicorn on TLS, with the client certificate visible to the app.

Uvicorn (0.54) does not fill in the ASGI TLS extension, so X.509 devices could not be told apart
over HTTPS. ``TlsH11Protocol`` is uvicorn's h11 protocol that, once the handshake is done, adds
``scope["extensions"]["tls"]`` (as the ASGI spec words it: ``client_cert_chain`` as PEM strings,
leaf first, then the intermediates the client sent; ``tls_version``) to every request on the
connection. ``iotsec.hub.tls.server_ssl_context`` builds a context that asks for them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from iotsec.hub.tls import peer_certificates

__all__ = ["TlsH11Protocol", "https_server", "with_tls_extension"]

log = logging.getLogger("iotsec.hub.http")

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def with_tls_extension(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    """``app`` with ``tls`` added as ``scope["extensions"]["tls"]`` to each request."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": tls}}
        await app(scope, receive, send)

    return wrapped


def _tls_info(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    presented = peer_certificates(ssl_object)
    ders = [presented.leaf, *presented.chain] if presented.leaf else []
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der) for der in ders],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version or ""),
        "cipher_suite": None,
    }


class TlsH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol, plus the ASGI TLS extension for every request."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows BaseTransport the same way
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = with_tls_extension(self.app, _tls_info(ssl_object))


def https_server(
    app: ASGIApp,
    ssl_context: ssl.SSLContext,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    log_level: str = "warning",
) -> tuple[uvicorn.Server, socket.socket]:
    """A uvicorn server for ``app`` on TLS, and its bound socket: ``await server.serve([sock])``.

    The socket is bound here, so ``port=0`` picks a free port that the caller can read from
    ``sock.getsockname()`` before serving. Ask for client certificates in ``ssl_context``
    (``verify_mode = CERT_OPTIONAL`` with the trusted CAs loaded) to let X.509 devices in.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    config = uvicorn.Config(
        app,
        http=TlsH11Protocol,
        ws="none",
        lifespan="off",
        log_config=None,  # logging belongs to the composition root, not to uvicorn
        log_level=log_level,
        access_log=False,
        server_header=False,
        ssl_context_factory=lambda _config, _default: ssl_context,
    )
    return uvicorn.Server(config), sock
