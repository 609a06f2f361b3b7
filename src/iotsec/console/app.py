"""The console application: one Starlette app with its pages, actions and static files.

``console_routes(backend, users, settings)`` is what the composition root mounts on the
server: the console under ``settings.path``, and ``/`` redirecting there.
``build_console_app`` is the bare app, for tests and other mounts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from iotsec.console import actions, pages, users_admin
from iotsec.console.backend import ConsoleBackend
from iotsec.console.context import HERE, Console
from iotsec.console.errors import BackendError, NotFound
from iotsec.console.security import SecurityHeaders
from iotsec.console.settings import ConsoleSettings
from iotsec.console.users import UserStore

__all__ = ["build_console_app", "console_routes"]

log = logging.getLogger("iotsec.console")

_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 413: "Too large"}


def build_console_app(
    backend: ConsoleBackend,
    users: UserStore,
    settings: ConsoleSettings,
    *,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The console as an ASGI app (mount it under ``settings.path``)."""
    console = Console(backend, users, settings, clock=clock, monotonic=monotonic)

    async def error_page(request: Request, exc: Exception) -> Response:
        view = await console.view(request)
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, str(exc.detail)
        elif isinstance(exc, NotFound):
            status, message = 404, str(exc)
        else:
            assert isinstance(exc, BackendError)
            log.warning("console: %s %s: %s", request.method, request.url.path, exc)
            status, message = 502, f"the server could not answer: {exc}"
        title = _TITLES.get(status, "Error")
        return console.render(
            request, view, "error.html", status=status, code=status, title=title, message=message
        )

    routes: list[BaseRoute] = [
        *pages.routes(console),
        *actions.routes(console),
        *users_admin.routes(console),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: error_page,
            NotFound: error_page,
            BackendError: error_page,
        },
    )
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    return app


def console_routes(
    backend: ConsoleBackend,
    users: UserStore,
    settings: ConsoleSettings,
    *,
    clock: Callable[[], float] = time.time,
) -> list[BaseRoute]:
    """The console mounted at ``settings.path``, and ``/`` redirecting there."""
    app = build_console_app(backend, users, settings, clock=clock)

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{settings.path}/", status_code=307)

    return [Mount(settings.path, app=app), Route("/", home, methods=["GET", "HEAD"])]
