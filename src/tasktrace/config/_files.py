"""Config files: finding one (``find_config_file``) and loading it (``load``), the only
file I/O of the configuration.

``load`` works with ``os.path`` (``pathlib`` is imported only by the public
:func:`find_config_file`), and reads a large file through the parsed-config cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

from tasktrace import environment as _vars
from tasktrace.config._builder import _NO_OVERRIDES, _build, _parse_file_data, _read_variable
from tasktrace.config._schema import _kind
from tasktrace.config._settings import Settings
from tasktrace.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path


_PYPROJECT_TABLE_RE = rb"(?m)^\s*\[\s*tool\s*\.\s*tasktrace\s*[\].]"


def _kind_of_file(path: str) -> str:
    return "pyproject.toml" if os.path.basename(path) == "pyproject.toml" else "tasktrace.toml"


def _pyproject_has_table(path: str) -> bool:
    """Whether ``path`` is a readable pyproject.toml with a ``[tool.tasktrace]`` table.

    A pyproject.toml that does not parse still counts when it visibly has the table, so
    ``load`` reports its syntax error instead of silently ignoring the configuration.
    """
    from tasktrace import _compat

    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError:
        return False
    if b"tasktrace" not in content:  # cheap: most pyproject.toml files never mention us
        return False
    try:
        data = _compat.load_toml(content.decode("utf-8"))
    except (UnicodeDecodeError, _compat.toml_decode_error()):
        return re.search(_PYPROJECT_TABLE_RE, content) is not None
    tool = data.get("tool")
    return isinstance(tool, Mapping) and "tasktrace" in tool


def _tidy(path: str) -> str:
    """``path`` written as ``str(pathlib.Path(path))`` writes it, without importing pathlib.

    Repeated separators and ``.`` parts go, and so does a trailing separator; ``..`` is
    kept (collapsing it could name another file when a symlink is involved).
    """
    drive, rest = os.path.splitdrive(path)
    if os.altsep:
        rest = rest.replace(os.altsep, os.sep)
    root = os.sep if rest.startswith(os.sep) else ""
    if root and rest.startswith(os.sep * 2) and not rest.startswith(os.sep * 3):
        root = os.sep * 2  # POSIX keeps exactly two leading slashes, and so does pathlib
    parts = [part for part in rest.split(os.sep) if part and part != "."]
    return drive + root + os.sep.join(parts) or "."


def _as_path(text: Union[str, os.PathLike[str]], cwd: Optional[str]) -> str:
    path = os.path.expanduser(os.fspath(text))
    if cwd is not None and not os.path.isabs(path):
        path = os.path.join(cwd, path)
    return _tidy(path)


def _find_config_file(
    explicit: Union[str, os.PathLike[str], None],
    env: Mapping[str, str],
    cwd: Optional[str],
) -> Optional[Tuple[str, str]]:
    """:func:`find_config_file` with the path as a ``str``.

    ``load`` uses this one: the bootstrap calls ``load`` in every process it starts, and
    ``pathlib`` (which imports ``urllib.parse`` and ``ipaddress``) costs milliseconds.
    """
    if explicit is not None and os.fspath(explicit) != "":
        path = _as_path(explicit, cwd)
        return path, _kind_of_file(path)
    found = _read_variable(env, (_vars.TASKTRACE_CONFIG_FILE,))
    if found is not None:
        path = _as_path(found[1].strip(), cwd)
        return path, _kind_of_file(path)
    directory = _tidy(cwd) if cwd is not None else os.getcwd()
    candidate = os.path.join(directory, "tasktrace.toml")
    if os.path.isfile(candidate):
        return candidate, "tasktrace.toml"
    candidate = os.path.join(directory, "pyproject.toml")
    if os.path.isfile(candidate) and _pyproject_has_table(candidate):
        return candidate, "pyproject.toml"
    return None


def find_config_file(
    explicit: Union[str, os.PathLike[str], None] = None,
    env: Mapping[str, str] = os.environ,
    cwd: Optional[str] = None,
) -> Optional[Tuple[Path, str]]:
    """Find the config file: ``explicit`` > ``TASKTRACE_CONFIG_FILE`` >
    ``./tasktrace.toml`` > ``./pyproject.toml`` (only if it has ``[tool.tasktrace]``).

    An explicit path or the variable is returned whether or not the file exists (``load``
    then reports it); the two discovered files only when they exist.

    Args:
        explicit: a path given on the command line or to ``initialize()``.
        env: the environment variables.
        cwd: the directory to search and to resolve relative paths against (default: the
            current directory).

    Returns:
        ``(path, kind)`` with kind ``"tasktrace.toml"`` or ``"pyproject.toml"`` (decided
        by the file's name), or None when there is no config file.
    """
    from pathlib import Path

    found = _find_config_file(explicit, env, cwd)
    return None if found is None else (Path(found[0]), found[1])


def load(
    path: Union[str, os.PathLike[str], None] = None,
    *,
    environment: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    overrides: Mapping[str, Any] = _NO_OVERRIDES,
    cwd: Optional[str] = None,
    origin: Optional[str] = None,
) -> Settings:
    """Find, read and parse the configuration; see :func:`find_config_file` and :func:`parse`.

    Args:
        path: an explicit config file (``--config``); it must exist.
        environment: the ``[env.<name>]`` table to apply (like ``--environment``).
        env: the environment variables (default ``os.environ``).
        overrides: command-line flags, as for :func:`parse`.
        cwd: where to look for ``tasktrace.toml``/``pyproject.toml`` (default: the
            current directory).
        origin: how ``path`` was named, for messages (default ``"--config"``), e.g.
            ``"the FILE argument"``.

    Returns:
        The settings. With no config file at all: defaults plus variables and flags.
        ``sources["config_file"]`` says how the file was found: ``"--config"``,
        ``"TASKTRACE_CONFIG_FILE"``, ``"discovered"`` or ``"default"`` (none).

    Raises:
        ConfigurationError: the file is missing (when named explicitly or by the variable)
            or unreadable, is not UTF-8, is not valid TOML (the message has the line and
            column), an explicit pyproject.toml has no ``[tool.tasktrace]`` table, or
            :func:`parse` finds problems.
    """
    variables: Mapping[str, str] = os.environ if env is None else env
    found = _find_config_file(path, variables, cwd)
    if path is not None and os.fspath(path) != "":
        how = "--config"
    elif found is not None and _read_variable(variables, (_vars.TASKTRACE_CONFIG_FILE,)):
        how = _vars.TASKTRACE_CONFIG_FILE
    else:
        how = "discovered"
    if found is None:
        settings, problems = _build(
            {}, None, environment=environment, env=variables, overrides=overrides
        )
        if problems:
            raise ConfigurationError(problems)
        return _with_source(settings, "config_file", "default")

    source, kind = found
    if how == "--config":
        named_by = "the --config option" if origin in (None, "--config") else origin
    elif how == _vars.TASKTRACE_CONFIG_FILE and _from_launcher(variables):
        named_by = "the --config option of tasktrace-admin run-program"
    else:
        named_by = how
    try:
        with open(source, "rb") as handle:
            content = handle.read()
    except FileNotFoundError:
        raise ConfigurationError(
            f"{source}: the config file does not exist (named by {named_by}); "
            "check the path, or run 'tasktrace-admin generate-config' to create one"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"{source}: cannot read the config file: {exc.strerror or exc}; "
            "check that it is a file and that this user may read it"
        ) from exc
    data = _read_toml(source, content, variables)

    key_prefix = ""
    if kind == "pyproject.toml":
        tool = data.get("tool")
        table = tool.get("tasktrace") if isinstance(tool, Mapping) else None
        if table is None:
            raise ConfigurationError(
                f"{source}: there is no [tool.tasktrace] table; add one, or point "
                "--config at a tasktrace.toml"
            )
        if not isinstance(table, Mapping):
            raise ConfigurationError(
                f"{source}: tool.tasktrace: expected a table, got {_kind(table)}; "
                "write it as a [tool.tasktrace] section"
            )
        data, key_prefix = dict(table), "tool.tasktrace."
    settings = _parse_file_data(data, source, environment, variables, overrides, key_prefix)
    return _with_source(settings, "config_file", how)


def _read_toml(source: str, content: bytes, env: Mapping[str, str]) -> Dict[str, Any]:
    """Decode and parse a config file's ``content``; a large one through the parse cache.

    Raises:
        ConfigurationError: not UTF-8, or not valid TOML (with line and column).
    """
    from tasktrace import _compat

    cached = len(content) >= _CACHE_MIN_SIZE
    if cached:
        # Late and only here: a small config never loads the cache module.
        from tasktrace import _config_cache

        data = _config_cache.read(source, content, env)
        if isinstance(data, dict):
            return data
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{source}: the file is not UTF-8 text (byte {exc.start}); save it as UTF-8, "
            "as TOML requires"
        ) from exc
    try:
        data = _compat.load_toml(text)
    except _compat.toml_decode_error() as exc:
        raise ConfigurationError(
            f"{source}: invalid TOML: {exc}; fix the syntax there (strings need quotes, "
            "tables are written [name], arrays of tables [[name]])"
        ) from exc
    if cached:
        from tasktrace import _config_cache

        _config_cache.write(source, content, data, env)
    return data


#: ``tasktrace._config_cache.MIN_SIZE``, here so that a small config need not import it.
_CACHE_MIN_SIZE = 32 * 1024

#: Set by ``tasktrace-admin run-program --config FILE`` to the path it puts in
#: ``TASKTRACE_CONFIG_FILE``, so a message about that file can say where it was named.
#: (A literal in ``tasktrace.admin.run`` too: the launcher imports nothing of this module.)
_LAUNCHER_CONFIG = "TASKTRACE_BOOTSTRAP_CONFIG"


def _from_launcher(env: Mapping[str, str]) -> bool:
    """Whether ``TASKTRACE_CONFIG_FILE`` holds what ``run-program --config`` put there."""
    marked = env.get(_LAUNCHER_CONFIG)
    return bool(marked) and marked == env.get(_vars.TASKTRACE_CONFIG_FILE)


def _with_source(settings: Settings, key: str, origin: str) -> Settings:
    sources = dict(settings.sources)
    sources[key] = origin
    return settings._replace(sources=MappingProxyType(sources))
