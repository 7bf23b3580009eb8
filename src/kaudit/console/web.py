"""What the console's routes share: the app's state, who is asking (`current_user`,
`call_for`), where the request came from (`request_info`), and rendering a page.

Templates are Jinja2 with autoescaping on, so every value written into a page is
escaped; pages carry the CSRF token in their forms and in htmx's request headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from kaudit.config import Config
from kaudit.console.audit import ConsoleRecorder, RequestInfo
from kaudit.console.identity import ConsoleUser
from kaudit.console.service import Call, ConsoleService
from kaudit.console.sessions import LoginLimiter, SessionStore, new_token
from kaudit.errors import KauditError

__all__ = [
    "PAGES",
    "BadRequest",
    "ConsoleState",
    "call_for",
    "csrf_token",
    "current_user",
    "path_segment",
    "render",
    "request_info",
    "state",
]

PAGES = Path(__file__).parent / "pages"


class BadRequest(KauditError, ValueError):
    """A form or query value that cannot be read: a 400 whose message says what was
    wrong and what is accepted. Nothing was asked of Kafka."""


_templates = Environment(
    loader=FileSystemLoader(PAGES / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _json(value: Any) -> str:
    """A value as indented JSON text (autoescaped like any other text), "" when absent."""
    if value is None or isinstance(value, Undefined):
        return ""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def path_segment(value: Any) -> str:
    """A value as one URL path segment: every reserved character (`/`, `?`, `#`, `%`)
    percent-encoded, so a group id such as `payments?x` names that group."""
    return quote(str(value), safe="")


_templates.filters["json"] = _json
_templates.filters["segment"] = path_segment


@dataclass
class ConsoleState:
    """Everything the routes need, kept on `app.state.console`."""

    config: Config
    service: ConsoleService
    recorder: ConsoleRecorder
    sessions: SessionStore
    limiter: LoginLimiter


def state(request: Request) -> ConsoleState:
    console: ConsoleState = request.app.state.console
    return console


def request_info(request: Request) -> RequestInfo:
    return RequestInfo(
        request_id=getattr(request.state, "request_id", None) or new_token()[:16],
        source_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def current_user(request: Request) -> ConsoleUser | None:
    """The user of this request's live session (set by the app's guard)."""
    user: ConsoleUser | None = getattr(request.state, "user", None)
    return user


def call_for(request: Request, cluster: str) -> Call:
    user = current_user(request)
    if user is None:  # the guard lets no anonymous request reach a cluster route
        raise PermissionError("no session")
    return Call(user, request_info(request), cluster)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made when the session has none yet."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = new_token()
        request.session["csrf"] = token
    return token


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    console = state(request)
    user = current_user(request)
    token = csrf_token(request)
    page = _templates.get_template(template).render(
        request=request,
        user=user,
        admin=user is not None and console.service.rbac.is_admin(user),
        clusters=console.service.clusters.names,
        csrf=token,
        htmx_headers=orjson.dumps({"X-CSRF-Token": token}).decode(),
        **context,
    )
    return HTMLResponse(page, status_code=status_code)
