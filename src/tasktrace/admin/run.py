"""``run-program`` and ``run-python``: exec a program with the bootstrap on ``PYTHONPATH``.

Every instrumented program pays for this module before it starts, so it imports no more
than ``os`` and ``sys``: the options are parsed by hand (:func:`parse_arguments`, which
accepts what the ``argparse`` parser of :func:`add_arguments` accepts), and ``argparse``
is loaded only to print ``--help``.
"""

from __future__ import annotations

import os
import sys

from tasktrace.bootstrap import BOOTSTRAP_DIR

# typing costs milliseconds to import and is needed only by type checkers here (the
# annotations are strings); mypy treats a name TYPE_CHECKING as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Dict, List, Optional, Sequence, Union


#: Python options that make the interpreter skip ``PYTHONPATH`` or ``site``, and so the bootstrap.
_SKIPPING_FLAGS = {"-I": "isolated mode", "-E": "ignoring PYTHON* variables", "-S": "no site"}

#: The long options of both commands, each taking one value, and their attribute names.
_OPTIONS = {"--config": "config", "--app-name": "app_name", "--environment": "environment"}

_METAVARS = {"--config": "FILE", "--app-name": "NAME", "--environment": "ENV"}
_LONG = ("--help", *_OPTIONS)

_USAGE = {
    "run-program": "usage: tasktrace-admin run-program [-h] [--config FILE] [--app-name NAME] "
    "[--environment ENV] [--] PROGRAM [ARGS...]\n",
    "run-python": "usage: tasktrace-admin run-python [-h] [--config FILE] [--app-name NAME] "
    "[--environment ENV] [--] [ARGS...]\n",
}


def add_arguments(parser: argparse.ArgumentParser, *, python: bool) -> None:
    """The options shared by ``run-program`` and ``run-python`` (for ``help`` and ``-h``).

    :func:`parse_arguments` parses the same options without ``argparse``; keep the two in
    step.
    """
    import argparse

    parser.add_argument("--config", metavar="FILE", help="the TOML config file")
    parser.add_argument(
        "--app-name", metavar="NAME", help="the application name (TASKTRACE_APP_NAME)"
    )
    parser.add_argument(
        "--environment", metavar="ENV", help="apply the [env.ENV] table (TASKTRACE_ENVIRONMENT)"
    )
    if python:
        parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for Python")
    else:
        parser.add_argument(
            "program", nargs=argparse.REMAINDER, help="the program and its arguments"
        )


class RunOptions:
    """The parsed command line of ``run-program``/``run-python``.

    ``program`` (run-program) and ``args`` (run-python) are the same list: everything from
    the first argument that is not one of our options, verbatim.
    """

    __slots__ = ("app_name", "config", "environment", "program")

    def __init__(
        self,
        program: List[str],
        config: Optional[str] = None,
        app_name: Optional[str] = None,
        environment: Optional[str] = None,
    ) -> None:
        self.program = program
        self.config = config
        self.app_name = app_name
        self.environment = environment

    @property
    def args(self) -> List[str]:
        """``program`` under the name ``run-python`` gives it."""
        return self.program

    def __repr__(self) -> str:
        return (
            f"RunOptions(program={self.program!r}, config={self.config!r}, "
            f"app_name={self.app_name!r}, environment={self.environment!r})"
        )


def _usage_error(command: str, message: str) -> SystemExit:
    sys.stderr.write(f"{_USAGE[command]}tasktrace-admin {command}: error: {message}\n")
    return SystemExit(2)


def parse_arguments(command: str, argv: Sequence[str], description: str = "") -> RunOptions:
    """Parse the arguments of ``run-program`` or ``run-python`` as ``argparse`` would.

    Our options (``--config FILE`` or ``--config=FILE``, ``--app-name``,
    ``--environment``, unique prefixes of them, ``-h``/``--help``) come first; the first
    other argument, or everything after ``--``, is the program and its arguments, kept
    verbatim even when they look like our options.

    Args:
        command: ``"run-program"`` or ``"run-python"``.
        argv: the arguments after the command name.
        description: the command's description, for ``--help``.

    Returns:
        The options; ``program`` may be empty (``run_program`` reports that).

    Raises:
        SystemExit: 0 after printing ``--help``; 2 after a usage message on stderr for an
            unknown option or an option without its value.
    """
    values: Dict[str, Optional[str]] = dict.fromkeys(_OPTIONS.values())
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if not arg.startswith("-") or arg == "-":
            break  # the program
        if arg == "-h":
            _print_help(command, description)
            raise SystemExit(0)
        name, has_value, value = arg.partition("=")
        # Like argparse, accept an unambiguous prefix of a long option (--app for --app-name).
        matches = [o for o in _LONG if o.startswith(name)] if name.startswith("--") else []
        if name in _LONG:
            matches = [name]
        if len(matches) > 1:
            raise _usage_error(
                command, f"ambiguous option: {name} could match {', '.join(matches)}"
            )
        if not matches:
            raise _usage_error(command, f"unrecognized arguments: {arg}")
        option = matches[0]
        if option == "--help":
            _print_help(command, description)
            raise SystemExit(0)
        if not has_value:
            index += 1
            if index >= len(argv) or argv[index].startswith("-"):
                raise _usage_error(
                    command, f"argument {option} {_METAVARS[option]}: expected one argument"
                )
            value = argv[index]
        values[_OPTIONS[option]] = value
        index += 1
    return RunOptions(list(argv[index:]), **values)


def _print_help(command: str, description: str) -> None:
    """Print ``--help`` exactly as the full ``tasktrace-admin`` parser does (argparse)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"tasktrace-admin {command}", description=description or None
    )
    add_arguments(parser, python=command == "run-python")
    parser.print_help()


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(BOOTSTRAP_DIR))


def _installed_in_site_packages(parent: str) -> bool:
    import site  # already loaded at start-up (unless python -S), so free

    try:
        dirs = list(site.getsitepackages())
    except AttributeError:  # pragma: no cover - old virtualenv's site module
        dirs = []
    user = getattr(site, "getusersitepackages", lambda: "")()
    dirs.append(user)
    return any(os.path.realpath(parent) == os.path.realpath(d) for d in dirs if d)


def build_environment(
    base: Dict[str, str],
    *,
    config: Optional[str],
    app_name: Optional[str],
    environment: Optional[str],
) -> Dict[str, str]:
    """The environment the program runs with: bootstrap first on PYTHONPATH, flags as variables.

    Command-line flags win over variables the user already set (flag > variable), and are
    passed as variables so every Python child process of the program sees them too.
    """
    env = dict(base)
    paths = [BOOTSTRAP_DIR]
    parent = _package_parent()
    if not _installed_in_site_packages(parent):
        # A source checkout (bin/tasktrace-admin): the program's Python must find it too.
        paths.append(parent)
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    env["PYTHONPATH"] = os.pathsep.join(paths + existing)
    env["TASKTRACE_BOOTSTRAP_PYTHON"] = (
        f"{os.path.realpath(sys.prefix)}|{sys.version_info[0]}.{sys.version_info[1]}"
    )
    if config:
        path = os.path.abspath(os.path.expanduser(config))
        env["TASKTRACE_CONFIG_FILE"] = path
        # So that "the config file does not exist" can say --config named it (see
        # tasktrace.config._LAUNCHER_CONFIG).
        env["TASKTRACE_BOOTSTRAP_CONFIG"] = path
    else:
        env.pop("TASKTRACE_BOOTSTRAP_CONFIG", None)
    if app_name:
        env["TASKTRACE_APP_NAME"] = app_name
    if environment:
        env["TASKTRACE_ENVIRONMENT"] = environment
    return env


def _warn_skipping_flags(argv: Sequence[str]) -> None:
    """Warn when the Python command line would skip the bootstrap."""
    for arg in argv[1:]:
        if not arg.startswith("-") or arg == "-" or arg.startswith("--"):
            break  # the script, or a long option: Python's own short flags come first
        if arg in ("-m", "-c"):
            break
        for flag, meaning in _SKIPPING_FLAGS.items():
            if flag[1] in arg[1:] and not arg.startswith("-W") and not arg.startswith("-X"):
                sys.stderr.write(
                    f"tasktrace-admin: warning: python {flag} ({meaning}) skips the tasktrace "
                    f"bootstrap; this program will not be instrumented\n"
                )


def _looks_like_python(program: str) -> bool:
    name = os.path.basename(program)
    return name.startswith("python") or name.startswith("pypy")


def _which(program: str, search_path: Optional[str]) -> Optional[str]:
    """``shutil.which(program, path=search_path)``, without importing ``shutil``.

    ``shutil`` loads ``zlib``, ``bz2`` and ``lzma`` (about 2 ms); this is the POSIX part
    of its search, which is all the launcher needs there (Windows uses ``shutil``).
    """
    if os.name == "nt":  # pragma: no cover - PATHEXT and the current directory
        import shutil

        return shutil.which(program, path=search_path)
    if search_path is None:
        try:
            search_path = os.confstr("CS_PATH") or os.defpath
        except (AttributeError, ValueError):  # pragma: no cover - no confstr
            search_path = os.defpath
    if not search_path:
        return None
    seen = set()
    for directory in search_path.split(os.pathsep):
        # An empty entry means the current directory, as for the shell (and shutil).
        if directory in seen:
            continue
        seen.add(directory)
        candidate = os.path.join(directory, program)
        if (
            os.path.exists(candidate)
            and os.access(candidate, os.F_OK | os.X_OK)
            and not os.path.isdir(candidate)
        ):
            return candidate
    return None


def exec_program(argv: List[str], env: Dict[str, str]) -> int:
    """Replace this process with ``argv`` (same PID); returns only on failure."""
    program = argv[0]
    path = program if os.sep in program else _which(program, env.get("PATH"))
    if path is None or not os.path.exists(path):
        sys.stderr.write(f"tasktrace-admin: program not found: {program}\n")
        return 127
    if not os.access(path, os.X_OK) or os.path.isdir(path):
        sys.stderr.write(f"tasktrace-admin: not an executable program: {program}\n")
        return 126
    if _looks_like_python(path):
        _warn_skipping_flags(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(path, argv, env)
    except OSError as exc:
        sys.stderr.write(f"tasktrace-admin: cannot run {program}: {exc.strerror}\n")
        return 126
    return 126  # pragma: no cover - execve does not return


def run_program(args: Union[RunOptions, argparse.Namespace]) -> int:
    """``tasktrace-admin run-program [options] [--] PROGRAM [ARGS...]``."""
    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        sys.stderr.write(_USAGE["run-program"] + "tasktrace-admin: error: no program given\n")
        return 2
    env = build_environment(
        dict(os.environ), config=args.config, app_name=args.app_name, environment=args.environment
    )
    return exec_program(argv, env)


def run_python(args: Union[RunOptions, argparse.Namespace]) -> int:
    """``tasktrace-admin run-python [options] [--] [ARGS...]``: this interpreter, instrumented."""
    rest = list(args.args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    env = build_environment(
        dict(os.environ), config=args.config, app_name=args.app_name, environment=args.environment
    )
    return exec_program([sys.executable, *rest], env)
