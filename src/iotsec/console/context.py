"""What every console handler shares: ``Console`` (its dependencies) and ``View`` (a request's).

``Console.endpoint`` wraps each handler: it resolves the session, sends strangers to the
sign-in page, and, for POSTs, checks the Origin, the CSRF token and the role on the server
before the handler runs. A refusal is an ``HTTPException`` the app renders as an error page.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from iotsec import __version__
from iotsec.console import filters
from iotsec.console.auth import Principal, SignIn
from iotsec.console.backend import ConsoleBackend
from iotsec.console.security import LoginLimiter, read_form, same_origin
from iotsec.console.sessions import Session, SessionCodec
from iotsec.console.settings import ConsoleSettings
from iotsec.console.users import Role, UserStore

__all__ = ["Console", "Handler", "View", "base_of"]

log = logging.getLogger("iotsec.console")

HERE = Path(__file__).parent

Handler = Callable[["Console", Request, "View"], Awaitable[Response]]


@dataclass
class View:
    """One request's session, who it belongs to, and its form (POST)."""

    session: Session
    principal: Principal | None
    #: The session is new (or renewed) and must be sent as a cookie.
    fresh: bool = False
    form: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> Principal:
        """The signed-in principal (endpoints that get here have one)."""
        assert self.principal is not None
        return self.principal


def base_of(request: Request) -> str:
    """Where the console is mounted, for links (``/console``)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


class Console:
    """Everything the console's handlers share, passed through the constructor."""

    def __init__(
        self,
        backend: ConsoleBackend,
        users: UserStore,
        settings: ConsoleSettings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.users = users
        self.settings = settings
        self.clock = clock
        self.codec = SessionCodec(settings.secret, ttl=settings.session_ttl, clock=clock)
        self.sign_in = SignIn(users, secret=settings.secret, owner_key=settings.owner_key)
        self.limiter = LoginLimiter(
            attempts=settings.login_attempts, window=settings.login_window, clock=monotonic
        )
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        filters.install(self.templates)

    async def view(self, request: Request) -> View:
        """The request's session (a new anonymous one when it has none) and principal."""
        session = self.codec.decode(request.cookies.get(self.settings.cookie_name))
        if session is None:
            return View(self.codec.new(), None, fresh=True)
        principal = await asyncio.to_thread(self.sign_in.principal, session)
        if principal is None and session.username is not None:
            return View(self.codec.new(), None, fresh=True)  # signed out by a change
        return View(session, principal)

    def set_session(self, response: Response, session: Session) -> None:
        """Send ``session`` as the HttpOnly, Secure, SameSite=Strict cookie."""
        response.set_cookie(
            self.settings.cookie_name,
            self.codec.encode(session),
            max_age=int(session.expires - self.clock()),
            path="/",
            secure=self.settings.secure_cookies,
            httponly=True,
            samesite="strict",
        )

    def render(
        self, request: Request, view: View, name: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """Render template ``name`` with the common context (base path, user, CSRF token)."""
        template = self.templates.get_template(name)
        html = template.render(
            base=base_of(request),
            user=view.principal,
            csrf=view.session.csrf,
            hub_name=self.settings.hub_name,
            version=__version__,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if view.fresh:
            self.set_session(response, view.session)
        return response

    def redirect(self, request: Request, path: str, view: View | None = None) -> Response:
        """A 303 to ``path`` under the console's base."""
        response = RedirectResponse(f"{base_of(request)}{path}", status_code=303)
        if view is not None and view.fresh:
            self.set_session(response, view.session)
        return response

    def endpoint(
        self, handler: Handler, *, role: Role = "viewer", post: bool = False, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the session, sign-in, CSRF and role checks."""

        async def run(request: Request) -> Response:
            view = await self.view(request)
            if post:
                if not same_origin(request):
                    raise HTTPException(403, "this form was sent from another site")
                view.form = await read_form(request)
                if view.fresh or not _same(view.form.get("csrf", ""), view.session.csrf):
                    raise HTTPException(403, "the form has expired; reload the page and retry")
            if not public:
                if view.principal is None:
                    target = quote(request.url.path, safe="/")
                    return self.redirect(request, f"/login?next={target}", view)
                if not view.principal.can(role):
                    log.info(
                        "console: %s (%s) refused %s %s",
                        view.principal.username,
                        view.principal.role,
                        request.method,
                        request.url.path,
                    )
                    raise HTTPException(403, f"the {view.principal.role} role cannot do this")
            return await handler(self, request, view)

        return run


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
