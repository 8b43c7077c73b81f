"""The web application: Starlette over `Site` (what pages show, what actions do) and
`AccessStore` (accounts, sessions, audit). Server-rendered pages from Jinja2 templates
with autoescaping; no script anywhere (the Content-Security-Policy forbids it); every
action is a form POST carrying the session's CSRF token, answered with a redirect (so a
reload never repeats it) to the page that shows its outcome.

Only `GET /healthz` and the sign-in form answer without a session. URLs carry task ids,
pseudonymous patient refs and filter names, never a name or an answer.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from carepath.serve.access import ADMIN, AccessProblem, AccessStore, Session
from carepath.serve.site import ACTIONS, Refused, Site
from carepath.sinks.worklist_text import role_label

SESSION_COOKIE = "carepath_session"
LOGIN_COOKIE = "carepath_login"     # the sign-in form's CSRF token (double submit: cookie and field)
MAX_FORM = 64 * 1024
_SAFE_BACK = re.compile(r"/[A-Za-z0-9/_\-.~%?=&]*")
log = logging.getLogger("carepath.serve")

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Settings:
    idle_minutes: float = 15.0
    login_limit: int = 5              # failed sign-ins per user name or client ...
    login_window_minutes: float = 15  # ... within this long, then refused until it passes
    secure_cookies: bool = False      # always mark cookies Secure (else only on https requests)
    user_header: str | None = None    # trust this header from an SSO proxy as the signed-in user


class _Flash:
    """One message per session for the page after a redirect, kept in memory (never in the URL)."""

    def __init__(self) -> None:
        self._messages: dict[str, tuple[str, bool]] = {}

    def put(self, token: str, message: str, ok: bool) -> None:
        self._messages[token] = (message, ok)

    def take(self, token: str) -> tuple[str, bool] | None:
        return self._messages.pop(token, None)


def create_app(site: Site, access: AccessStore, settings: Settings = Settings()) -> Starlette:
    flash = _Flash()
    idle = settings.idle_minutes * 60

    def page(request: Request, name: str, status: int = 200, **context: object) -> HTMLResponse:
        body = _templates().get_template(name).render(**context)
        return HTMLResponse(body, status_code=status, headers=HEADERS)

    def secure(request: Request) -> bool:
        return settings.secure_cookies or request.url.scheme == "https"

    def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
        response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure(request), path="/")

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "-"

    async def session_of(request: Request) -> tuple[str, Session] | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        found = await run_in_threadpool(access.session, token, idle) if token else None
        if found is not None:
            return token, found
        if settings.user_header and (name := request.headers.get(settings.user_header)):
            user = await run_in_threadpool(access.user, name)
            if user is not None and not user.disabled:
                return await run_in_threadpool(access.open_session, user, client_of(request), "sign_in_sso")
        return None

    async def form_of(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return {}
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                return {}
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
        return {k: v[0] for k, v in parsed.items()}

    def signed_out(request: Request) -> Response:
        if request.method == "GET":
            return RedirectResponse("/login", status_code=303, headers=HEADERS)
        return PlainTextResponse("sign in first", status_code=403, headers=HEADERS)

    def with_session(handler: Callable) -> Callable:
        async def endpoint(request: Request) -> Response:
            found = await session_of(request)
            if found is None:
                return signed_out(request)
            token, session = found
            form: dict[str, str] = {}
            if request.method == "POST":
                form = await form_of(request)
                if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
                    await run_in_threadpool(access.audit, session.user.name, "csrf_refused", None,
                                            {"path": request.url.path})
                    return PlainTextResponse("the form's security token is missing or stale: reload the page "
                                             "and try again", status_code=403, headers=HEADERS)
            response = await handler(request, token, session, form)
            if request.cookies.get(SESSION_COOKIE) != token:  # a session an SSO header opened
                set_cookie(response, request, SESSION_COOKIE, token)
            return response
        return endpoint

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        response = page(request, "login.html.j2", csrf=token, error=None)
        set_cookie(response, request, LOGIN_COOKIE, token)
        return response

    async def login(request: Request) -> Response:
        form = await form_of(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(form.get("csrf", ""), expected):
            return PlainTextResponse("the sign-in form's security token is missing or stale: reload the page",
                                     status_code=403, headers=HEADERS)
        name, password = form.get("username", "")[:64], form.get("password", "")
        try:
            token, _ = await run_in_threadpool(access.sign_in, name, password, client_of(request),
                                               limit=settings.login_limit,
                                               window=settings.login_window_minutes * 60)
        except AccessProblem as exc:
            fresh = secrets.token_urlsafe(32)
            response = page(request, "login.html.j2", status=401 if "wrong" in str(exc) else 429, csrf=fresh,
                            error=str(exc))
            set_cookie(response, request, LOGIN_COOKIE, fresh)
            return response
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        set_cookie(response, request, SESSION_COOKIE, token)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(request: Request, token: str, session: Session, form: dict[str, str]) -> Response:
        await run_in_threadpool(access.sign_out, token, session.user.name)
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def worklist(request: Request, token: str, session: Session, form: dict[str, str]) -> Response:
        user = session.user
        wanted = request.query_params.get("role")
        roles = site.roles
        if wanted is None:
            role = None if user.role == ADMIN else user.role
        else:
            role = wanted if wanted in roles and wanted != ADMIN else None
        mine = user.name if request.query_params.get("mine") == "1" else None
        data = await run_in_threadpool(site.worklist, role, mine, user.role)
        return page(request, "worklist.html.j2", w=data, user=user, csrf=session.csrf, flash=flash.take(token),
                    role_label=role_label, here=_here(request))

    async def patient(request: Request, token: str, session: Session, form: dict[str, str]) -> Response:
        ref = request.path_params["ref"]
        actors = await run_in_threadpool(access.actors, ref)
        data = await run_in_threadpool(site.patient, ref, session.user.role, actors)
        if data is None:
            return page(request, "missing.html.j2", status=404, user=session.user, csrf=session.csrf, ref=ref)
        await run_in_threadpool(access.audit, session.user.name, "patient_viewed", ref, {})
        return page(request, "patient.html.j2", p=data, user=session.user, csrf=session.csrf,
                    flash=flash.take(token), here=_here(request))

    async def act(request: Request, token: str, session: Session, form: dict[str, str]) -> Response:
        action, task_id = request.path_params["action"], request.path_params["task"]
        ref = form.get("patient", "")
        back = form.get("back", "/")
        if not _SAFE_BACK.fullmatch(back) or back.startswith("//"):
            back = "/"  # only a page of this site (no "//host" or "/\\host" a browser would leave for)
        note = form.get("note", "").strip()
        detail: dict[str, object] = {"task": task_id}
        if form.get("decision"):
            detail["decision"] = form["decision"][:64]
        if note:
            detail["note"] = note[:2000]  # notes stay here (0600), never in the events file or Prefect
        user = session.user
        if action not in ACTIONS:
            return PlainTextResponse("unknown action", status_code=404, headers=HEADERS)
        try:
            done = await run_in_threadpool(lambda: site.act(user.name, user.role, action, ref, task_id,
                                                            decision=form.get("decision", ""), note=note))
        except Refused as exc:
            await run_in_threadpool(access.audit, user.name, f"{action}_refused", ref or None,
                                    {**detail, "reason": str(exc)})
            flash.put(token, f"Not recorded: {exc}", False)
        else:
            await run_in_threadpool(access.audit, user.name, action, ref,
                                    {**detail, "event": done.event_id, "pathway": done.pathway})
            flash.put(token, done.message, True)
        return RedirectResponse(back, status_code=303, headers=HEADERS)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", with_session(logout), methods=["POST"]),
        Route("/", with_session(worklist), methods=["GET"]),
        Route("/patients/{ref:str}", with_session(patient), methods=["GET"]),
        Route("/tasks/{task:str}/{action:str}", with_session(act), methods=["POST"]),
    ]
    async def failed(request: Request, exc: Exception) -> Response:
        # A bug or a database that stopped answering: say so on the page; the log gets the
        # kind of error and the path (refs and ids only), never the form's contents.
        log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return PlainTextResponse("carepath could not complete this request (the server's log says why); "
                                 "nothing was recorded unless the page says so. Go back and reload.",
                                 status_code=500, headers=HEADERS)

    return Starlette(routes=routes, exception_handlers={Exception: failed})


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return quote(request.url.path) + query


@cache
def _templates() -> Environment:
    env = Environment(loader=PackageLoader("carepath.serve", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["role_label"] = role_label
    return env
