"""Files and directories tasktrace creates, made private to the user who runs the program.

What tasktrace stores (error messages, tracebacks, attribute values) often holds personal
data and secrets, so the directories it creates are ``0700`` and the files ``0600``,
whatever the process umask allows others (the umask is never changed: it belongs to the
program). Only what tasktrace itself creates gets these modes; an existing file or
directory keeps the one its owner gave it. SQLite creates a database's ``-wal`` and
``-shm`` files with the database file's own mode, so creating the database file here is
enough for them too.
"""

from __future__ import annotations

import os

__all__ = ["DIR_MODE", "FILE_MODE", "make_private_dirs", "open_private", "touch_private"]

#: The mode of every directory tasktrace creates.
DIR_MODE = 0o700
#: The mode of every file tasktrace creates.
FILE_MODE = 0o600


def make_private_dirs(path: str) -> None:
    """Create directory ``path`` and any missing parents, each created one ``0700``.

    Directories that already exist are left as they are.

    Raises:
        OSError: a directory cannot be created (or a parent is not a directory).
    """
    missing = []
    current = os.path.abspath(path)
    while current and not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue  # another process made it first: its mode is theirs to choose
        # The umask may have taken more than the group and other bits; set exactly 0700.
        os.chmod(directory, DIR_MODE)


def open_private(path: str, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)``, creating the file ``0600`` if it is missing.

    Its parent directories are created as by :func:`make_private_dirs`.

    Returns:
        The file descriptor (the caller closes it).

    Raises:
        OSError: as ``os.open``.
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        make_private_dirs(parent)
    # The mode only applies when the file is created; an existing file keeps its own.
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


def touch_private(path: str) -> None:
    """Create ``path`` empty and ``0600`` (and its parents ``0700``) unless it exists.

    Used before SQLite opens a new database, so that the database and its ``-wal`` and
    ``-shm`` files are private from the start.

    Raises:
        OSError: the file cannot be created.
    """
    if os.path.exists(path):
        return
    try:
        fd = open_private(path, os.O_WRONLY | os.O_EXCL)
    except FileExistsError:
        return  # another process created it meanwhile
    os.close(fd)
