"""Defences every console response or form gets: headers, form parsing, sign-in rate limits.

``SecurityHeaders`` wraps the console app: a Content-Security-Policy that allows only our own
script and style files (no inline script, no eval), no framing, no sniffing, no caching of
pages. ``read_form`` parses an urlencoded POST body with a size cap. ``LoginLimiter`` counts
failed sign-ins per source address in a sliding window.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "LoginLimiter", "SecurityHeaders", "read_form", "same_origin"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # same-origin, not no-referrer: browsers then send a real Origin on our own POSTs.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
#: Largest form body accepted (custom alert rules and queries fit well below).
MAX_FORM_BYTES = 256 * 1024


class SecurityHeaders:
    """ASGI middleware adding the security headers (and ``no-store`` to HTML)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers[name] = value
                if headers.get("content-type", "").startswith("text/html"):
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def same_origin(request: Request) -> bool:
    """Whether a POST came from our own pages: its Origin (when sent) is this server."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin == f"{request.url.scheme}://{host}"


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded POST body as a dict (the last value of a repeated field wins).

    Raises:
        HTTPException: 415 for another content type, 413 over ``MAX_FORM_BYTES``, 400 if bad.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "forms must be sent as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form cannot be read") from None
    return dict(pairs)


class LoginLimiter:
    """At most ``attempts`` failed sign-ins per address in any ``window`` seconds.

    >>> now = [0.0]
    >>> limiter = LoginLimiter(attempts=2, window=60, clock=lambda: now[0])
    >>> limiter.failed("192.0.2.1"); limiter.failed("192.0.2.1")
    >>> limiter.retry_after("192.0.2.1"), limiter.retry_after("192.0.2.2")
    (60.0, 0.0)
    >>> now[0] = 61.0; limiter.retry_after("192.0.2.1")
    0.0
    """

    def __init__(
        self,
        *,
        attempts: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._max = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        times = self._failures.get(address)
        if times is None:
            return deque()
        cutoff = self._clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: now)."""
        times = self._recent(address)
        if len(times) < self.attempts:
            return 0.0
        return max(0.0, times[-self.attempts] + self.window - self._clock())

    def failed(self, address: str) -> None:
        """Count a failed sign-in from ``address``."""
        times = self._failures.setdefault(address, deque(maxlen=self.attempts))
        times.append(self._clock())
        self._failures.move_to_end(address)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """Forget ``address``'s failures."""
        self._failures.pop(address, None)
