"""Who this process is, for the store's running entries: the host's name, and when a process
started (to tell a live process from a later one that reuses its pid)."""

from __future__ import annotations

import socket
from typing import Optional


def hostname() -> str:
    """This machine's name (``"unknown"`` if it cannot be had)."""
    try:
        return socket.gethostname() or "unknown"
    except OSError:
        return "unknown"


def process_start(pid: int) -> Optional[int]:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``); None if
    there is no such process, it has ended (a zombie not yet reaped), or this system has
    no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        if fields[0] in (b"Z", b"X"):  # field 3, the state: zombie or dead
            return None
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None
