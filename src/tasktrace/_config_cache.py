"""A per-user cache of parsed config files, so a large config costs little at every start.

The bootstrap reads the config in every Python process a program starts. Parsing TOML is
the largest part of that for a big target table (about 100 ms for 5,000 targets on a
2-core machine, against about 2 ms to load the same data with :mod:`marshal`), so the
parsed table of a file of at least :data:`MIN_SIZE` bytes is kept in
``$XDG_CACHE_HOME/tasktrace/`` (default ``~/.cache/tasktrace/``), one file per config
path. An entry holds the file's whole content and is used only when the content read now
is byte for byte the same, so an edit is never missed, however quickly it follows.

Only files this user owns and nobody else may write are trusted (``marshal`` is not meant
for data someone else made): the directory is created 0700 and entries are written 0600,
through a temporary file and ``os.replace`` so that concurrent starts never see half an
entry. Any problem (no home, a read-only or shared cache directory, a full disk, data
``marshal`` cannot hold, such as TOML dates) means no caching, never an error. Nothing is
imported here that the interpreter has not loaded already at start-up.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
from typing import Any, Mapping, Optional

#: Files smaller than this are parsed every time: they parse in well under a millisecond,
#: and a cache entry per small config would only add files to the user's cache.
MIN_SIZE = 32 * 1024

#: Bumped whenever what an entry holds changes.
_FORMAT = 1
#: Entries are specific to this interpreter: marshal's format and tomllib may differ.
_TAG = f"tasktrace-config-cache/{_FORMAT}/{sys.implementation.cache_tag}"


def _directory(env: Mapping[str, str]) -> Optional[str]:
    base = env.get("XDG_CACHE_HOME", "").strip()
    if not base or not os.path.isabs(base):
        home = env.get("HOME", "").strip() or os.path.expanduser("~")
        if not home or home == "~":
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "tasktrace")


def _entry_name(path: str) -> str:
    """A file name for ``path`` (FNV-1a, 64 bits: stable across runs, unlike ``hash``)."""
    value = 0xCBF29CE484222325
    for byte in os.fsencode(path):
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"config-{value:016x}.marshal"


def _private(st: os.stat_result, directory: bool) -> bool:
    """Owned by this user, and (for a file) a regular file nobody else may write."""
    if st.st_uid != os.getuid():
        return False
    if directory:
        return stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o022
    return stat.S_ISREG(st.st_mode) and not st.st_mode & 0o077


def read(path: str, content: bytes, env: Mapping[str, str]) -> Optional[Any]:
    """The parsed data cached for ``path`` if it was parsed from exactly ``content``."""
    if len(content) < MIN_SIZE or os.name != "posix":
        return None
    directory = _directory(env)
    if directory is None:
        return None
    try:
        if not _private(os.stat(directory), directory=True):
            return None
        with open(os.path.join(directory, _entry_name(path)), "rb") as handle:
            if not _private(os.fstat(handle.fileno()), directory=False):
                return None
            entry = marshal.loads(handle.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if (
        isinstance(entry, tuple)
        and len(entry) == 4
        and entry[0] == _TAG
        and entry[1] == path
        and entry[2] == content
    ):
        return entry[3]
    return None


def write(path: str, content: bytes, data: Any, env: Mapping[str, str]) -> None:
    """Keep ``data`` parsed from ``content`` for the next start; silently gives up."""
    if len(content) < MIN_SIZE or os.name != "posix":
        return
    directory = _directory(env)
    if directory is None:
        return
    try:
        blob = marshal.dumps((_TAG, path, content, data))
    except ValueError:  # e.g. TOML dates and times: parse such a file every time
        return
    temporary = os.path.join(directory, f".{_entry_name(path)}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not _private(os.stat(directory), directory=True):
            return
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)
        os.replace(temporary, os.path.join(directory, _entry_name(path)))
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
