"""``tasktrace-admin``: run programs instrumented, check and show the config, report, and
show stored errors and traces, in a terminal or a local web dashboard.

Each command lives in its own module and is imported only when it runs, so that
``run-program`` (which execs the program at once) stays fast.
"""

from __future__ import annotations

import sys

from tasktrace._version import __version__

# ``typing`` and ``argparse`` cost milliseconds to import, which every program started by
# run-program would pay; the annotations are strings, so only type checkers need them
# (mypy treats a name TYPE_CHECKING as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Callable, Dict, List, Optional

_DESCRIPTIONS: Dict[str, str] = {
    "run-program": "run PROGRAM instrumented (exec: same PID, same exit status)",
    "run-python": "run this Python interpreter instrumented, with ARGS",
    "validate-config": "check the config and resolve every target; exit 1 on any error",
    "generate-config": "write a commented starter config to FILE (or stdout)",
    "show-config": "show the effective settings and where each came from",
    "report": "summarise recorded tasks from the SQLite store",
    "errors": "stored errors grouped by task, type and message, the latest first",
    "traces": "stored transactions, newest (or --slowest) first",
    "trace": "one trace as a tree, with each transaction's function traces as a waterfall",
    "ui": "a local, read-only web dashboard over the store (charts, errors, traces)",
    "running": "tasks running now, past their max_duration, or lost (their process died)",
    "check": "did each scheduled task run on time? exit 1 if one is missed, failed, overdue or lost",
    "prune": "apply retention, roll-ups and max_size to the SQLite store now",
    "help": "show help for a command",
}

_EPILOG = """\
examples:
  TASKTRACE_APP_NAME=billing tasktrace-admin run-program python job.py
  tasktrace-admin validate-config tasktrace.toml
  tasktrace-admin report --since 1h
  tasktrace-admin errors --since 1d
  tasktrace-admin traces --slowest --name 'jobs:*'
  tasktrace-admin trace 4bf92f35
  tasktrace-admin ui --port 8765
  tasktrace-admin running
  tasktrace-admin check || echo "a scheduled job needs attention"
"""


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="tasktrace-admin",
        description="Instrument Python background work and look at what it did.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tasktrace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    from tasktrace.admin import run

    for name, python in (("run-program", False), ("run-python", True)):
        sub = commands.add_parser(name, help=_DESCRIPTIONS[name], description=_DESCRIPTIONS[name])
        run.add_arguments(sub, python=python)

    from tasktrace.admin import config_cmds

    for name in ("validate-config", "show-config"):
        sub = commands.add_parser(name, help=_DESCRIPTIONS[name], description=_DESCRIPTIONS[name])
        config_cmds.add_file_argument(sub)
    sub = commands.add_parser(
        "generate-config",
        help=_DESCRIPTIONS["generate-config"],
        description=_DESCRIPTIONS["generate-config"],
    )
    sub.add_argument("file", nargs="?", help="where to write (default: stdout)")
    sub.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    sub.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="MODULE:OBJECT",
        help="add a [[background_task]] entry for this function (repeatable); without it "
        "the file has commented examples only",
    )

    sub = commands.add_parser(
        "report", help=_DESCRIPTIONS["report"], description=_DESCRIPTIONS["report"]
    )
    from tasktrace.admin import report

    report.add_arguments(sub)

    from tasktrace.admin import views

    for name, add in (
        ("errors", views.add_errors_arguments),
        ("traces", views.add_traces_arguments),
        ("trace", views.add_trace_arguments),
    ):
        sub = commands.add_parser(name, help=_DESCRIPTIONS[name], description=_DESCRIPTIONS[name])
        add(sub)

    from tasktrace.admin import liveness

    for name, add in (
        ("running", liveness.add_running_arguments),
        ("check", liveness.add_check_arguments),
    ):
        sub = commands.add_parser(name, help=_DESCRIPTIONS[name], description=_DESCRIPTIONS[name])
        add(sub)

    sub = commands.add_parser("ui", help=_DESCRIPTIONS["ui"], description=_DESCRIPTIONS["ui"])
    from tasktrace.admin import ui

    ui.add_arguments(sub)

    sub = commands.add_parser(
        "prune", help=_DESCRIPTIONS["prune"], description=_DESCRIPTIONS["prune"]
    )
    from tasktrace.admin import prune

    prune.add_arguments(sub)

    sub = commands.add_parser("help", help=_DESCRIPTIONS["help"], description=_DESCRIPTIONS["help"])
    sub.add_argument("topic", nargs="?", metavar="COMMAND")
    return parser


def _dispatch(name: str) -> Callable[[argparse.Namespace], int]:
    if name == "run-program":
        from tasktrace.admin.run import run_program

        return run_program
    if name == "run-python":
        from tasktrace.admin.run import run_python

        return run_python
    if name == "report":
        from tasktrace.admin.report import run

        return run
    if name in ("errors", "traces", "trace"):
        from tasktrace.admin import views

        return {"errors": views.run_errors, "traces": views.run_traces, "trace": views.run_trace}[
            name
        ]

    if name in ("running", "check"):
        from tasktrace.admin import liveness

        return liveness.run_running if name == "running" else liveness.run_check
    if name == "ui":
        from tasktrace.admin.ui import run as run_ui

        return run_ui
    if name == "prune":
        from tasktrace.admin.prune import run as run_prune

        return run_prune
    from tasktrace.admin import config_cmds

    return {
        "validate-config": config_cmds.validate_config,
        "generate-config": config_cmds.generate_config,
        "show-config": config_cmds.show_config,
    }[name]


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``tasktrace-admin`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list and args_list[0] in ("run-program", "run-python"):
        # The launcher's fast path: parse by hand and exec, importing nothing else of
        # tasktrace and not argparse (start-up time is paid by every instrumented program).
        from tasktrace.admin import run

        name = args_list[0]
        options = run.parse_arguments(name, args_list[1:], _DESCRIPTIONS[name])
        return (run.run_python if name == "run-python" else run.run_program)(options)
    parser = _parser()
    if not args_list:
        parser.print_usage(sys.stderr)
        sys.stderr.write(
            "tasktrace-admin: error: a command is required (try 'tasktrace-admin help')\n"
        )
        return 2
    args = parser.parse_args(args_list)
    if args.command == "help":
        topic = args.topic
        if topic is None:
            parser.print_help()
            return 0
        if topic not in _DESCRIPTIONS:
            sys.stderr.write(f"tasktrace-admin: unknown command {topic!r}\n")
            return 2
        parser.parse_args([topic, "--help"])
        return 0  # pragma: no cover - --help exits
    try:
        return _dispatch(args.command)(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `tasktrace-admin report | head`
        return 0
