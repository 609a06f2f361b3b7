"""The users page (admin only): add users, change their role, disable, reset, delete.

An admin cannot demote, disable or delete themselves here, so the console is never left
without the admin who is using it; the owner credential always gets in regardless.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from iotsec.console.context import Console, View
from iotsec.console.errors import UserStoreError
from iotsec.console.passwords import MIN_PASSWORD_LENGTH
from iotsec.console.users import ROLES

__all__ = ["routes"]

log = logging.getLogger("iotsec.console")

_OPERATIONS = ("role", "disable", "enable", "password", "delete")


async def render_users(
    console: Console, request: Request, view: View, *, message: str | None = None, status: int = 200
) -> Response:
    """The user list with the admin forms, and a message about the last change."""
    users = await asyncio.to_thread(console.users.list)
    return console.render(
        request,
        view,
        "users.html",
        status=status,
        title="Users",
        users=users,
        roles=ROLES,
        message=message,
        min_password=MIN_PASSWORD_LENGTH,
    )


async def users_page(console: Console, request: Request, view: View) -> Response:
    return await render_users(console, request, view)


async def add_user(console: Console, request: Request, view: View) -> Response:
    form = view.form
    name = form.get("username", "").strip()
    try:
        await asyncio.to_thread(
            console.users.add, name, form.get("role", ""), form.get("password", "")
        )
    except UserStoreError as exc:
        return await render_users(console, request, view, message=str(exc), status=400)
    log.info("console: %s added user %r (%s)", view.user.username, name, form.get("role"))
    return console.redirect(request, "/users")


async def change_user(console: Console, request: Request, view: View) -> Response:
    name = request.path_params["username"]
    operation = view.form.get("op", "")
    if operation not in _OPERATIONS:
        return await render_users(console, request, view, message="Unknown change.", status=400)
    if name.lower() == view.user.username.lower() and operation in ("role", "disable", "delete"):
        return await render_users(
            console,
            request,
            view,
            message="You cannot change your own role or account here.",
            status=400,
        )
    store = console.users
    try:
        if operation == "role":
            await asyncio.to_thread(store.set_role, name, view.form.get("role", ""))
        elif operation in ("disable", "enable"):
            await asyncio.to_thread(store.set_disabled, name, operation == "disable")
        elif operation == "password":
            await asyncio.to_thread(store.set_password, name, view.form.get("password", ""))
        else:
            await asyncio.to_thread(store.delete, name)
    except UserStoreError as exc:
        return await render_users(console, request, view, message=str(exc), status=400)
    log.info("console: %s changed user %r: %s", view.user.username, name, operation)
    return console.redirect(request, "/users")


def routes(console: Console) -> list[BaseRoute]:
    """The users page and its forms; all of them need the admin role."""
    page = console.endpoint
    return [
        Route("/users", page(users_page, role="admin"), methods=["GET"], name="users"),
        Route("/users", page(add_user, role="admin", post=True), methods=["POST"]),
        Route("/users/{username}", page(change_user, role="admin", post=True), methods=["POST"]),
    ]
