"""``validate-config``, ``generate-config`` and ``show-config``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from tasktrace._compat import load_toml
from tasktrace.admin._describe import STARTER_CONFIG, describe
from tasktrace.config import Settings, TargetSettings, load, parse
from tasktrace.exceptions import ConfigurationError, TargetError

if TYPE_CHECKING:
    from tasktrace.targets import Resolved


def add_file_argument(parser: argparse.ArgumentParser) -> None:
    """``[FILE]``, ``--config FILE`` and ``--environment``, for validate-config and
    show-config (``--config`` as ``run-program`` takes it)."""
    parser.add_argument(
        "file",
        nargs="?",
        help="the config file (default: TASKTRACE_CONFIG_FILE, ./tasktrace.toml, "
        "[tool.tasktrace] in ./pyproject.toml)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="the config file, as run-program takes it (or FILE)"
    )
    parser.add_argument("--environment", metavar="ENV", help="apply the [env.ENV] table")


class _UsageError(Exception):
    """The command line names the config file twice, differently."""


def _config_path(args: argparse.Namespace) -> Tuple[Optional[str], Optional[str]]:
    """The config file named on the command line and how: ``(path, origin)``.

    Raises:
        _UsageError: FILE and ``--config`` are both given and name different files.
    """
    file, option = getattr(args, "file", None), getattr(args, "config", None)
    if file and option:
        if os.path.abspath(os.path.expanduser(file)) != os.path.abspath(os.path.expanduser(option)):
            raise _UsageError(
                f"the config file is given twice, as FILE ({file}) and as --config "
                f"({option}); give only one"
            )
        return option, "--config"
    if option:
        return option, "--config"
    if file:
        return file, "the FILE argument"
    return None, None


def _load(args: argparse.Namespace) -> Settings:
    overrides: Dict[str, Any] = {}
    if getattr(args, "environment", None):
        overrides["environment"] = args.environment
    path, origin = _config_path(args)
    return load(path, environment=args.environment, overrides=overrides, origin=origin)


def _usage_error(args: argparse.Namespace, exc: _UsageError) -> int:
    command = getattr(args, "command", None) or "validate-config"
    sys.stderr.write(f"tasktrace-admin {command}: error: {exc}\n")
    return 2


def _print_problems(exc: ConfigurationError) -> None:
    for problem in exc.problems:
        print(f"error: {problem}")


def _check_target(target: TargetSettings, settings: Optional[Settings] = None) -> List[str]:
    """Import the target's module and resolve its object path; a line per outcome.

    The target string itself was checked when the config was loaded.
    """
    from tasktrace.hooks import resolve_target

    label = f"{target.kind:15s} {target.function}"
    if not target.enabled:
        return [f"skip  {label}  (enabled = false)"]
    if target.module == "__main__":
        return [f"ok    {label}  (applied to the program's main script when it runs)"]
    try:
        resolved = resolve_target(target)
    except TargetError as exc:
        cause = exc.__cause__
        if (
            isinstance(cause, ModuleNotFoundError)
            and cause.name
            and target.module.startswith(cause.name)
        ):
            return [f"FAIL  {label}  module not found: {target.module!r} (is it on sys.path?)"]
        return [f"FAIL  {label}  {exc}"]
    except BaseException as exc:  # a module that raises on import, even SystemExit  # noqa: BLE001
        return [f"FAIL  {label}  importing {target.module!r} failed: {type(exc).__name__}: {exc}"]
    if not resolved:
        from tasktrace.targets import no_match_hint

        module = sys.modules.get(target.module)
        hint = "" if module is None else no_match_hint(module, target.object_path)
        return [f"FAIL  {label}  the pattern matches nothing in {target.module!r}{hint}"]
    lines = _task_object_lines(label, resolved, settings or Settings())
    if lines:
        return lines
    paths = ", ".join(r.path for r in resolved[:8])
    more = f" and {len(resolved) - 8} more" if len(resolved) > 8 else ""
    return [f"ok    {label}  -> {target.module}:{paths}{more}"]


def _liveness_lines(target: TargetSettings) -> List[str]:
    """A target's ``max_duration`` and schedule, its next due time, or why it cannot be used."""
    from tasktrace import schedules
    from tasktrace.store._views import rfc3339

    lines = []
    if target.max_duration is not None:
        lines.append(f"        max_duration {schedules.short_duration(target.max_duration)}")
    if target.schedule:
        try:
            schedule = schedules.parse(target.schedule, target.grace, target.timezone)
            due = rfc3339(schedule.next_after(time.time()))
        except schedules.ScheduleError as exc:
            return [*lines, f"FAIL  {target.kind:15s} {target.function}  schedule: {exc}"]
        lines.append(f"        schedule {schedules.describe(schedule)}: next due {due}")
    return lines


def _task_object_lines(label: str, resolved: Sequence[Resolved], settings: Settings) -> List[str]:
    """For a target naming job systems' task objects (a Celery ``@app.task``): what each is
    and whether it will be recorded; empty when it names none."""
    from tasktrace.integrations import _targets as integrations

    found = [(r, integrations.task_object(r.value)) for r in resolved]
    if not any(task for _, task in found):
        return []
    lines = []
    for match, task in found:
        if task is None:
            lines.append(f"ok    {label}  -> {match.path}")
            continue
        reason = integrations.unsupported_reason(task, settings)
        if reason is None:
            lines.append(f"ok    {label}  -> {task.description} ({match.path})")
        else:
            lines.append(f"FAIL  {label}  {match.path} records nothing: {reason}")
    return lines


def validate_config(args: argparse.Namespace) -> int:
    """Parse, validate, import every target module and resolve every target."""
    # Console scripts do not put the current directory on sys.path; the program would
    # (python job.py puts the script's directory there), so do the same for its modules.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        settings = _load(args)
    except _UsageError as exc:
        return _usage_error(args, exc)
    except ConfigurationError as exc:
        _print_problems(exc)
        print(f"{len(exc.problems)} problem(s) found")
        return 1
    source = settings.config_file or "no config file (defaults and variables only)"
    print(f"config: {source}")
    targets = list(settings.background_tasks) + list(settings.function_traces)
    if not targets:
        print("no [[background_task]] or [[function_trace]] entries: nothing will be instrumented")
    failures = 0
    for target in targets:
        for line in _check_target(target, settings) + _liveness_lines(target):
            print(line)
            failures += line.startswith("FAIL")
    print(f"{len(targets)} target(s), {failures} error(s)")
    return 1 if failures else 0


#: Where generate-config puts the entries given with --target: after the commented
#: [[background_task]] example, before the [[function_trace]] one.
_TARGETS_GO_BEFORE = "# Each [[function_trace]]"


def starter_config(targets: Sequence[str] = ()) -> str:
    """The starter config, with a ``[[background_task]]`` entry per item of ``targets``.

    Without targets every entry is a commented example, so the file validates as written;
    each target becomes a real entry (``"module:object.path"``, written as a TOML string).
    """
    if not targets:
        return STARTER_CONFIG
    import json

    lines = ["# The targets given to generate-config --target."]
    for target in targets:
        # A JSON string is a valid TOML basic string (the same escapes); non-ASCII stays
        # as it is, which TOML allows.
        lines += ["[[background_task]]", f"function = {json.dumps(target, ensure_ascii=False)}", ""]
    entries = "\n".join(lines) + "\n"
    head, marker, tail = STARTER_CONFIG.partition(_TARGETS_GO_BEFORE)
    if not marker:
        return STARTER_CONFIG.rstrip("\n") + "\n\n" + entries
    return head + entries + "\n" + marker + tail


def generate_config(args: argparse.Namespace) -> int:
    """Write the commented starter config, plus an entry per ``--target``, to FILE or stdout.

    Returns 2 without writing anything if a ``--target`` is not a valid target string.
    """
    targets: List[str] = list(getattr(args, "target", None) or ())
    text = starter_config(targets)
    if targets:
        destination = args.file if args.file and args.file != "-" else "<stdout>"
        try:
            parse(load_toml(text), destination)
        except ConfigurationError as exc:
            for problem in exc.problems:
                sys.stderr.write(f"tasktrace-admin: --target: {problem}\n")
            return 2
    if not args.file or args.file == "-":
        sys.stdout.write(text)
        return 0
    if os.path.exists(args.file) and not args.force:
        sys.stderr.write(
            f"tasktrace-admin: {args.file} already exists; use --force to overwrite it\n"
        )
        return 1
    try:
        with open(args.file, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        sys.stderr.write(f"tasktrace-admin: cannot write {args.file}: {exc.strerror}\n")
        return 1
    sys.stderr.write(
        f"wrote {args.file}; check it with: tasktrace-admin validate-config {args.file}\n"
    )
    return 0


def show_config(args: argparse.Namespace) -> int:
    """Print every effective setting and where it came from (secrets redacted)."""
    try:
        settings = _load(args)
    except _UsageError as exc:
        return _usage_error(args, exc)
    except ConfigurationError as exc:
        _print_problems(exc)
        return 1
    rows = describe(settings)
    width = max((len(key) for key, _, _ in rows), default=10)
    value_width = min(max((len(value) for _, value, _ in rows), default=10), 48)
    for key, value, source in rows:
        print(f"{key:{width}s}  {value:{value_width}s}  ({source})")
    return 0
