"""``run-program`` and ``run-python``: exec a program with the bootstrap on ``PYTHONPATH``."""

from __future__ import annotations

import argparse
import os
import shutil
import site
import sys
from typing import Dict, List, Optional, Sequence

from tasktrace.bootstrap import BOOTSTRAP_DIR

#: Python options that make the interpreter skip ``PYTHONPATH`` or ``site``, and so the bootstrap.
_SKIPPING_FLAGS = {"-I": "isolated mode", "-E": "ignoring PYTHON* variables", "-S": "no site"}


def add_arguments(parser: argparse.ArgumentParser, *, python: bool) -> None:
    """The options shared by ``run-program`` and ``run-python``."""
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


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(BOOTSTRAP_DIR))


def _installed_in_site_packages(parent: str) -> bool:
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
        env["TASKTRACE_CONFIG_FILE"] = os.path.abspath(os.path.expanduser(config))
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


def exec_program(argv: List[str], env: Dict[str, str]) -> int:
    """Replace this process with ``argv`` (same PID); returns only on failure."""
    program = argv[0]
    path = program if os.sep in program else shutil.which(program, path=env.get("PATH"))
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


def run_program(args: argparse.Namespace) -> int:
    """``tasktrace-admin run-program [options] [--] PROGRAM [ARGS...]``."""
    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        sys.stderr.write(
            "usage: tasktrace-admin run-program [--config FILE] [--app-name NAME] "
            "[--environment ENV] [--] PROGRAM [ARGS...]\n"
            "tasktrace-admin: error: no program given\n"
        )
        return 2
    env = build_environment(
        dict(os.environ), config=args.config, app_name=args.app_name, environment=args.environment
    )
    return exec_program(argv, env)


def run_python(args: argparse.Namespace) -> int:
    """``tasktrace-admin run-python [options] [--] [ARGS...]``: this interpreter, instrumented."""
    rest = list(args.args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    env = build_environment(
        dict(os.environ), config=args.config, app_name=args.app_name, environment=args.environment
    )
    return exec_program([sys.executable, *rest], env)
