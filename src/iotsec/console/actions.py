"""The console's forms: sign-in and out, alert actions, queries, custom alerts, feeds, users.

Each POST is routed through ``Console.endpoint(..., post=True, role=...)``: the Origin, the
CSRF token and the role are checked on the server before any of these handlers runs. Changes
are logged with who made them; passwords and keys never are.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from iotsec.console import pages
from iotsec.console.charts import line_chart, time_series
from iotsec.console.context import Console, View, base_of
from iotsec.console.errors import ActionRefused, NotConfigured, NotFound, QueryFailed
from iotsec.console.models import AlertAction, FeedSettings

__all__ = ["routes", "safe_next"]

log = logging.getLogger("iotsec.console")

_ALERT_ACTIONS = ("dismiss", "resolve")
_MAX_QUERY = 64 * 1024


def safe_next(base: str, target: str | None) -> str:
    """Where to go after sign-in: ``target`` if it is a page of this console, else its home.

    >>> safe_next("/console", "/console/devices/d1"), safe_next("/console", "//evil.example/")
    ('/devices/d1', '/')
    """
    if not target or not target.startswith(base + "/") or "//" in target or "\\" in target:
        return "/"
    return target[len(base) :]


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def login_page(console: Console, request: Request, view: View) -> Response:
    if view.principal is not None:
        return console.redirect(
            request, safe_next(base_of(request), request.query_params.get("next"))
        )
    return _login_form(console, request, view, error=None)


def _login_form(
    console: Console, request: Request, view: View, *, error: str | None, status: int = 200
) -> Response:
    return console.render(
        request,
        view,
        "login.html",
        status=status,
        title="Sign in",
        error=error,
        next=request.query_params.get("next", ""),
        owner_enabled=console.sign_in.owner_enabled,
    )


async def login(console: Console, request: Request, view: View) -> Response:
    address = _address(request)
    wait = console.limiter.retry_after(address)
    if wait > 0:
        log.warning("console: sign-in from %s refused: too many failures", address)
        response = _login_form(
            console,
            request,
            view,
            error=f"Too many failed sign-ins. Try again in {int(wait) + 1} seconds.",
            status=429,
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    username = view.form.get("username", "")[:128]
    password = view.form.get("password", "")[:4096]
    checked = await asyncio.to_thread(console.sign_in.check, username, password)
    if checked is None:
        console.limiter.failed(address)
        log.info("console: failed sign-in as %r from %s", username[:64], address)
        return _login_form(console, request, view, error="Wrong user name or password.", status=401)
    principal, stamp = checked
    console.limiter.succeeded(address)
    log.info("console: %s (%s) signed in from %s", principal.username, principal.role, address)
    session = console.codec.new(principal.username, stamp=stamp)
    target = safe_next(base_of(request), view.form.get("next"))
    response = console.redirect(request, target)
    console.set_session(response, session)
    return response


async def logout(console: Console, request: Request, view: View) -> Response:
    log.info("console: %s signed out", view.user.username)
    response = console.redirect(request, "/login")
    console.set_session(response, console.codec.new())
    return response


async def alert_status(console: Console, request: Request, view: View) -> Response:
    alert_id = request.path_params["alert_id"]
    action = view.form.get("action", "")
    if action not in _ALERT_ACTIONS:
        return await pages.render_alert(
            console, request, view, alert_id, message=f"Unknown action {action!r}.", status=400
        )
    reason = view.form.get("reason", "").strip()[:1000] or f"{action}ed in the console"
    try:
        await console.backend.change_alert_status(
            alert_id, cast(AlertAction, action), reason=reason, by=view.user.username
        )
    except NotConfigured as exc:
        message = f"Not configured: {exc.feature} is not available on this server yet."
        return await pages.render_alert(
            console, request, view, alert_id, message=message, status=501
        )
    except ActionRefused as exc:
        return await pages.render_alert(
            console, request, view, alert_id, message=str(exc), status=exc.status or 409
        )
    log.info("console: %s %sed alert %s", view.user.username, action.rstrip("e"), alert_id)
    return console.redirect(request, f"/alerts/{alert_id}")


async def run_query(console: Console, request: Request, view: View) -> Response:
    text = view.form.get("q", "")[:_MAX_QUERY]
    if not text.strip():
        return pages.render_query(console, request, view, text, error="Write a query first.")
    try:
        table = await console.backend.query(text, max_rows=console.settings.max_query_rows)
    except QueryFailed as exc:
        return pages.render_query(
            console,
            request,
            view,
            text,
            error=str(exc),
            error_at=(exc.line, exc.column),
            status=400,
        )
    except NotConfigured:
        return pages.render_query(
            console,
            request,
            view,
            text,
            error="The workspace is not configured on this server.",
            status=501,
        )
    series = time_series(table)
    chart = line_chart(series) if series is not None else None
    return pages.render_query(console, request, view, text, table=table, chart=chart)


async def save_custom_alerts(console: Console, request: Request, view: View) -> Response:
    group = view.form.get("group", "").strip()
    text = view.form.get("rules", "")
    if not group:
        return await pages.render_settings(
            console, request, view, message="Name the security group.", status=400
        )
    try:
        rules = orjson.loads(text or "{}")
    except orjson.JSONDecodeError as exc:
        return await pages.render_settings(
            console, request, view, message=f"The rules are not JSON: {exc}", status=400
        )
    if not isinstance(rules, dict):
        return await pages.render_settings(
            console, request, view, message="The rules must be a JSON object.", status=400
        )
    try:
        await console.backend.set_custom_alerts(group, rules)
    except NotConfigured:
        return await pages.render_settings(
            console,
            request,
            view,
            message="Custom alerts are not configured on this server.",
            status=501,
        )
    except ActionRefused as exc:
        return await pages.render_settings(
            console, request, view, message=f"Refused: {exc}", status=exc.status or 400
        )
    log.info("console: %s saved the custom alerts of group %r", view.user.username, group)
    return console.redirect(request, "/settings")


def _feed_settings(form: dict[str, str]) -> FeedSettings:
    def text(key: str, limit: int = 1024) -> str:
        return form.get(key, "").strip()[:limit]

    return FeedSettings(
        name=text("name", 128),
        kind=text("kind", 32),
        path=text("path", 4096),
        list_kind=text("list_kind", 32) or "auto",
        url=text("url", 2048),
        collection=text("collection", 256),
        api_root=text("api_root", 2048),
        username=text("username", 256),
        ca_file=text("ca_file", 4096),
        refresh=text("refresh", 32),
    )


async def save_feed(console: Console, request: Request, view: View) -> Response:
    feed = _feed_settings(view.form)
    if not feed.name:
        refused = ActionRefused("name: name the feed", status=400, field="name")
        return await pages.render_settings(
            console, request, view, status=400, feed_form=feed, feed_error=refused, adding=True
        )
    if view.form.get("new"):  # the add form must not replace a feed by accident
        try:
            taken = {f.name for f in await console.backend.intel_feeds()}
        except NotConfigured:
            taken = set()
        if feed.name in taken:
            reason = f"name: a feed named {feed.name!r} exists; edit it, or choose another name"
            refused = ActionRefused(reason, status=409, field="name")
            return await pages.render_settings(
                console, request, view, status=409, feed_form=feed, feed_error=refused, adding=True
            )
    # An empty password field keeps the feed's password; the checkbox removes it.
    password: str | None = view.form.get("password", "")[:1024] or None
    if view.form.get("clear_password"):
        password = ""
    try:
        await console.backend.put_intel_feed(feed, password=password)
    except NotConfigured:
        return await pages.render_settings(
            console,
            request,
            view,
            message="Managing threat-intelligence feeds is not available on this server.",
            status=501,
        )
    except ActionRefused as exc:
        return await pages.render_settings(
            console,
            request,
            view,
            status=exc.status or 400,
            feed_form=feed,
            feed_error=exc,
            adding=bool(view.form.get("new")),
        )
    log.info("console: %s saved intel feed %r (%s)", view.user.username, feed.name, feed.kind)
    return console.redirect(request, "/settings#intel-feeds")


async def delete_feed(console: Console, request: Request, view: View) -> Response:
    name = view.form.get("name", "")[:128]
    if not name:
        return await pages.render_settings(
            console, request, view, message="Name the feed to remove.", status=400
        )
    try:
        await console.backend.delete_intel_feed(name)
    except NotConfigured:
        return await pages.render_settings(
            console,
            request,
            view,
            message="Managing threat-intelligence feeds is not available on this server.",
            status=501,
        )
    except (NotFound, ActionRefused) as exc:
        return await pages.render_settings(
            console, request, view, message=f"Not removed: {exc}", status=exc.status or 400
        )
    log.info("console: %s removed intel feed %r", view.user.username, name)
    return console.redirect(request, "/settings#intel-feeds")


def routes(console: Console) -> list[BaseRoute]:
    """The form routes, each with the role it needs."""
    page = console.endpoint
    return [
        Route("/login", page(login_page, public=True), methods=["GET"], name="login"),
        Route("/login", page(login, public=True, post=True), methods=["POST"]),
        Route("/logout", page(logout, post=True), methods=["POST"], name="logout"),
        Route(
            "/alerts/{alert_id}/status",
            page(alert_status, role="analyst", post=True),
            methods=["POST"],
        ),
        Route("/query", page(run_query, role="analyst", post=True), methods=["POST"]),
        Route(
            "/settings/custom-alerts",
            page(save_custom_alerts, role="admin", post=True),
            methods=["POST"],
        ),
        Route(
            "/settings/intel-feeds",
            page(save_feed, role="admin", post=True),
            methods=["POST"],
        ),
        Route(
            "/settings/intel-feeds/delete",
            page(delete_feed, role="admin", post=True),
            methods=["POST"],
        ),
    ]
