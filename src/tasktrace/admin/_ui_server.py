"""The dashboard's server (``tasktrace-admin ui``, SPEC section 6): its routes, its JSON API
and its headers.

The server is the standard library's :class:`http.server.ThreadingHTTPServer`, so the
dashboard needs nothing beyond ``pip install tasktrace`` and adds nothing to what an
instrumented program imports (this module is imported only when ``ui`` runs). It serves
one static page (``ui_static/index.html``), its script and its style sheet, and a JSON API
whose answers are those of the commands' ``--format json`` for the same parameters,
because they call the same queries and serialise them the same way:

=============================  =================================================
route                          the same as
=============================  =================================================
``GET /api/report``            ``report --format json`` (``app``, ``since``, ``name``)
``GET /api/errors``            ``errors --format json`` (and ``limit``)
``GET /api/traces``            ``traces --format json`` (and ``errors``, ``slowest``)
``GET /api/trace/<id>``        ``trace ID --format json``
``GET /api/series``            :func:`tasktrace.store.series` (and ``step``)
``GET /api/running``           ``running --format json`` (``app``, ``name``, ``all``)
``GET /api/check``             ``check --format json`` (``app``, ``name``; the config
                               found in the server's directory, as ``check`` finds it)
=============================  =================================================

The page draws what the API returns with ``textContent`` and SVG attributes only, so text
the program wrote is never parsed as markup; every response carries a
Content-Security-Policy that allows only the server's own script and style
(:data:`SECURITY_HEADERS`). Only GET and HEAD are answered (405 otherwise), unknown paths
get 404, bad parameters 400 with ``{"error": "..."}``, a store that cannot be read 503;
no response ever holds a traceback. Each request opens the store read-only and closes it.
One difference from the commands: a store that holds no data yet answers ``/api/report``
with ``[]`` (``report`` exits 1 and says how to get some), so the page can say so.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Optional, Tuple, Type
from urllib.parse import parse_qs, urlsplit

__all__ = ["SECURITY_HEADERS", "make_server", "url_of"]

#: Sent with every response: only the server's own files may run or style the page.
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
#: The page's paths (all served the same page; its script draws the one the path names).
_PAGES = ("/", "/task", "/errors", "/jobs")
_STATIC = {
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_HEX = frozenset("0123456789abcdefABCDEF")
_STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui_static")


# -- parameters ----------------------------------------------------------------------------


class _BadRequest(Exception):
    """A parameter the API cannot take; ``str()`` says which and what it accepts."""


class _NotFound(Exception):
    """No such route or trace; ``str()`` says what."""


def _params(query: str, allowed: Tuple[str, ...]) -> Dict[str, str]:
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise _BadRequest("the query string is not UTF-8") from None
    result: Dict[str, str] = {}
    for key, values in parsed.items():
        if key not in allowed:
            raise _BadRequest(
                f"unknown parameter {key!r}: this route takes {', '.join(allowed) or 'none'}"
            )
        if len(values) > 1:
            raise _BadRequest(f"parameter {key!r} is given more than once")
        if values[0] != "":  # an empty field of the page's form means "not given"
            result[key] = values[0]
    return result


def _since(params: Dict[str, str]) -> Optional[float]:
    from tasktrace.store import parse_since

    if "since" not in params:
        return None
    try:
        return parse_since(params["since"])
    except ValueError as exc:
        raise _BadRequest(f"since: {exc}") from None


def _limit(params: Dict[str, str], default: int) -> int:
    text = params.get("limit")
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _BadRequest(f"limit: invalid count {text!r}: use a whole number") from None
    if value < 1:
        raise _BadRequest(f"limit: invalid count {text!r}: it must be at least 1")
    return value


def _flag(params: Dict[str, str], key: str) -> bool:
    text = params.get(key, "0").lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise _BadRequest(f"{key}: invalid value {params[key]!r}: use 1/true/yes or 0/false/no")


def _step(params: Dict[str, str]) -> Optional[float]:
    from tasktrace.store import parse_since

    text = params.get("step")
    if text is None:
        return None
    try:
        return float(int(text))  # plain seconds
    except ValueError:
        pass
    try:
        return parse_since(text)
    except ValueError as exc:
        raise _BadRequest(f"step: {exc} (or a whole number of seconds)") from None


# -- the API -------------------------------------------------------------------------------


def _api(path: str, route: str, query: str) -> Any:
    """The JSON document of API ``route`` (the part after ``/api/``) for ``query``.

    Raises:
        _BadRequest, _NotFound; sqlite3.Error and TaskTraceError when the store cannot be
        read.
    """
    from tasktrace import store

    if route == "report":
        p = _params(query, ("app", "since", "name"))
        since = _since(p)
        if not os.path.lexists(path):
            raise FileNotFoundError(f"no tasktrace store at {path}")
        if not store.has_data(path):  # (report says so and exits 1: here, no tasks)
            return []
        return store.report_rows(
            path, app=p.get("app"), since_seconds=since, name_glob=p.get("name")
        )
    ask: Callable[[Any], Any]
    if route == "errors":
        p = _params(query, ("app", "since", "name", "limit"))
        since, limit = _since(p), _limit(p, store.DEFAULT_LIMIT)

        def ask(conn: Any) -> Any:
            return store.error_groups(
                conn, app=p.get("app"), name_glob=p.get("name"), since_seconds=since, limit=limit
            )

    elif route == "traces":
        p = _params(query, ("app", "since", "name", "limit", "errors", "slowest"))
        since, limit = _since(p), _limit(p, store.DEFAULT_LIMIT)
        errors_only, slowest = _flag(p, "errors"), _flag(p, "slowest")

        def ask(conn: Any) -> Any:
            return store.list_traces(
                conn,
                app=p.get("app"),
                name_glob=p.get("name"),
                since_seconds=since,
                errors_only=errors_only,
                slowest=slowest,
                limit=limit,
            )

    elif route.startswith("trace/") and route.count("/") == 1:
        _params(query, ())
        wanted = route[len("trace/") :]

        if not (store.MIN_PREFIX <= len(wanted) <= 32 and all(c in _HEX for c in wanted)):
            raise _BadRequest(
                f"{wanted!r} is not a trace id: give its 32 hex digits or a prefix of at "
                f"least {store.MIN_PREFIX}"
            )

        def ask(conn: Any) -> Any:
            try:
                return store.find_trace(conn, wanted)
            except store.TraceLookupError as exc:  # unknown or ambiguous
                raise _NotFound(str(exc)) from None

    elif route == "series":
        p = _params(query, ("app", "since", "name", "step"))
        since, step = _since(p), _step(p)

        def ask(conn: Any) -> Any:
            try:
                return store.series(
                    conn,
                    app=p.get("app"),
                    name_glob=p.get("name"),
                    since_seconds=since,
                    step_seconds=step,
                )
            except ValueError as exc:
                raise _BadRequest(f"step: {exc}") from None

    elif route == "running":
        p = _params(query, ("app", "name", "all"))
        include_all = _flag(p, "all")

        def ask(conn: Any) -> Any:
            return store.running_entries(
                conn, app=p.get("app"), name_glob=p.get("name"), include_superseded=include_all
            )

    elif route == "check":
        p = _params(query, ("app", "name"))
        configured = _configured_schedules()

        def ask(conn: Any) -> Any:
            from tasktrace import schedules
            from tasktrace.admin.liveness import check_document

            try:
                return check_document(conn, configured, app=p.get("app"), name_glob=p.get("name"))
            except schedules.ScheduleError as exc:
                raise _BadRequest(str(exc)) from None

    else:
        raise _NotFound(f"no API route /api/{route}")
    conn = store.connect(path, readonly=True)
    try:
        return ask(conn)
    finally:
        conn.close()


def _configured_schedules() -> Any:
    """The scheduled tasks of the config ``check`` would find (SPEC section 3), read per
    request so that an edit shows at once.

    Raises:
        _BadRequest: the config cannot be used (its problems, in the message).
    """
    from tasktrace.admin.liveness import configured_schedules
    from tasktrace.exceptions import ConfigurationError

    try:
        return configured_schedules(None, None)
    except ConfigurationError as exc:
        raise _BadRequest("; ".join(exc.problems or [str(exc)])) from None


def _document(document: Any) -> bytes:
    # The commands print json.dumps(document, indent=2) and a newline: the same bytes.
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


# -- the server ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Answers GET and HEAD on the dashboard's routes; see the module docstring."""

    server_version = "tasktrace-ui"
    #: The store's path (set on the subclass :func:`make_server` builds).
    db_path = ""

    def version_string(self) -> str:
        """The ``Server`` header: no Python version."""
        return self.server_version

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _refuse(self) -> None:
        try:
            self._send(405, _document({"error": "only GET and HEAD are allowed"}), "json", True)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the terminal keeps the URL line readable."""

    def _answer(self, *, body: bool) -> None:
        import sqlite3

        from tasktrace.exceptions import TaskTraceError

        status, content_type = 200, "json"
        try:
            parts = urlsplit(self.path)
            path = parts.path
            if path.startswith("/api/"):
                payload = _document(_api(self.db_path, path[len("/api/") :], parts.query))
            elif path in _PAGES or (path.startswith("/trace/") and path.count("/") == 2):
                payload, content_type = _read_static("index.html"), "text/html; charset=utf-8"
            elif path in _STATIC:
                file_name, content_type = _STATIC[path]
                payload = _read_static(file_name)
            else:
                raise _NotFound(f"no page {path}")
        except _BadRequest as exc:
            status, payload = 400, _document({"error": str(exc)})
        except _NotFound as exc:
            status, payload = 404, _document({"error": str(exc)})
        except (sqlite3.Error, TaskTraceError, OSError) as exc:
            status, payload = 503, _document({"error": f"cannot read the store: {exc}"})
        except Exception as exc:  # never a traceback in a response  # noqa: BLE001
            sys.stderr.write(f"tasktrace-admin ui: {self.path!r}: {type(exc).__name__}: {exc}\n")
            status, payload = 500, _document({"error": "internal error (see the server's stderr)"})
        try:
            self._send(status, payload, content_type, body)
        except (BrokenPipeError, ConnectionResetError):  # the browser went away: nothing to say
            pass

    def _send(self, status: int, payload: bytes, content_type: str, body: bool) -> None:
        if content_type == "json":
            content_type = "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if status == 405:
            self.send_header("Allow", "GET, HEAD")
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)


def _read_static(name: str) -> bytes:
    with open(os.path.join(_STATIC_DIR, name), "rb") as f:
        return f.read()


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def make_server(db_path: str, host: str, port: int) -> ThreadingHTTPServer:
    """A dashboard server over the store at ``db_path``, bound (not yet serving).

    Raises:
        OSError: the address cannot be bound.
    """
    handler = type("Handler", (_Handler,), {"db_path": db_path})
    bare = host.strip("[]")
    server_class: Type[ThreadingHTTPServer] = ThreadingHTTPServer
    if ":" in bare:
        server_class = _Server6
    server = server_class((bare, port), handler)
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    """The ``http://HOST:PORT/`` address ``server`` listens on."""
    host, port = server.server_address[:2]
    text = host.decode() if isinstance(host, bytes) else str(host)
    shown = f"[{text}]" if ":" in text else text
    return f"http://{shown}:{port}/"
