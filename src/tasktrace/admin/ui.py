"""``tasktrace-admin ui``: a local, read-only web dashboard over the store (SPEC section 6).

This module holds the options and the run loop; the server, its routes and its JSON API are
in :mod:`tasktrace.admin._ui_server`, imported only when ``ui`` runs (so ``http.server`` is
not loaded by the other commands), and the page's files in ``ui_static/``.

Exit status: 0 after SIGINT or SIGTERM; 1 when the store is missing or cannot be read at
start (one line on stderr); 2 for bad arguments or an address that cannot be bound.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "add_arguments", "is_loopback", "run"]

#: Where the dashboard listens unless ``--host`` / ``--port`` say otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ui`` options to ``parser``."""
    from tasktrace.admin.report import add_db_argument

    add_db_argument(parser)
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"the address to listen on (default: {DEFAULT_HOST}; any other than a loopback "
        "address lets anyone who can reach it read the store)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"the TCP port (default: {DEFAULT_PORT}; 0 picks a free one)",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use 0 to 65535") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use 0 to 65535")
    return value


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ``::1``)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Stop(Exception):
    """Raised by the SIGTERM handler to end ``serve_forever``."""


def run(args: argparse.Namespace) -> int:
    """Run ``ui``; returns the exit status (see the module docstring)."""
    import signal

    from tasktrace.admin._ui_server import make_server, url_of
    from tasktrace.admin.views import _open

    conn, path = _open("ui", args.db)
    if conn is None:
        return 1
    conn.close()
    try:
        server = make_server(path, args.host, args.port)
    except OSError as exc:
        sys.stderr.write(f"tasktrace-admin ui: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 2
    sys.stderr.write(f"tasktrace dashboard at {url_of(server)} (store {path}; Ctrl-C stops it)\n")
    if not is_loopback(args.host):
        sys.stderr.write(
            f"tasktrace-admin ui: warning: listening on {args.host}, not a loopback address: "
            "the store's data is readable by anyone who can reach it\n"
        )
    sys.stderr.flush()

    def stop(signum: int, frame: Any) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0
