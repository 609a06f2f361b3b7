"""The hub's HTTPS endpoint: IoT Hub's device REST API and service REST API on one Starlette app.

>>> from iotsec.hub.http import build_app, HubContext  # doctest: +SKIP
>>> app = build_app(HubContext(registry=..., authenticator=..., ...))  # doctest: +SKIP
"""

from iotsec.hub.http.app import build_app
from iotsec.hub.http.context import DesiredNotifier, HubContext
from iotsec.hub.http.openapi import openapi_document
from iotsec.hub.http.responses import BadRequest, PayloadTooLarge
from iotsec.hub.http.server import TlsH11Protocol, https_server

__all__ = [
    "BadRequest",
    "DesiredNotifier",
    "HubContext",
    "PayloadTooLarge",
    "TlsH11Protocol",
    "build_app",
    "https_server",
    "openapi_document",
]
