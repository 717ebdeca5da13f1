"""The pure builder: TOML data, variables and flags to ``Settings``.

Layers are applied from the lowest precedence to the highest (*flag > TASKTRACE_* variable
> [env.<name>] table > base file > default*), recording where each value came from, and
every problem is collected before one :class:`~tasktrace.exceptions.ConfigurationError`
is raised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Optional, Tuple

from tasktrace import environment as _vars
from tasktrace.config._schema import (
    _FIELDS,
    _INTEGRATION_FIELDS,
    _OTEL_VARIABLES,
    _REPORTER_FIELDS,
    _TABLE_KEYS,
    _TARGET_KEYS,
    _TOP_FIELDS,
    _VARIABLES,
    _BadValue,
    _check_bool,
    _Field,
    _flag_for,
    _identity,
    _kind,
    _shown,
    _suggestion,
    _WrongType,
)
from tasktrace.config._settings import (
    IntegrationSettings,
    ReporterSettings,
    Settings,
    TargetSettings,
)
from tasktrace.exceptions import ConfigurationError


class _Builder:
    """Accumulates values, their sources and every problem found."""

    def __init__(self) -> None:
        settings_defaults = Settings()
        reporter_defaults = ReporterSettings()
        self.values: Dict[str, Any] = {}
        for key, field in _FIELDS.items():
            owner: Any = reporter_defaults if key.startswith("reporter.") else settings_defaults
            if key.startswith("integrations."):
                owner = settings_defaults.integrations
            self.values[key] = getattr(owner, field.attribute)
        self.sources: Dict[str, str] = dict.fromkeys(_FIELDS, "default")
        self.problems: List[str] = []
        self.targets: Dict[str, List[TargetSettings]] = {
            "background_task": [],
            "function_trace": [],
        }

    def set_toml(self, field: _Field, value: Any, where: str, keypath: str, label: str) -> None:
        """Apply a TOML value of ``field`` found at ``keypath`` in ``where``."""
        try:
            self.values[field.key] = field.check(value)
            self.sources[field.key] = label
        except _WrongType:
            shown = "" if field.secret else _shown(value)
            self.problems.append(
                f"{where}: {keypath}: expected {field.expected}, got {_kind(value)}{shown}; "
                f"write it like {field.name} = {field.example}"
            )
        except _BadValue as exc:
            self.problems.append(f"{where}: {keypath}: {exc.problem}; {exc.fix}")

    def set_text(
        self,
        field: _Field,
        text: str,
        origin: str,
        example: str,
        parse: Optional[Callable[[str], Any]] = None,
    ) -> None:
        """Apply a variable's text; ``origin`` is e.g. ``"environment variable X"``;
        ``parse`` reads the text instead of the field's own parser (OpenTelemetry
        variables written in other units)."""
        label = origin.rpartition(" ")[2]
        try:
            self.values[field.key] = field.check((parse or field.from_text)(text))
            self.sources[field.key] = label
        except ValueError as exc:
            self.problems.append(f"{origin}: {exc}; set it like {label}={example}")
        except _WrongType:  # pragma: no cover - from_text always returns the right type
            self.problems.append(f"{origin}: expected {field.expected}")
        except _BadValue as exc:
            self.problems.append(f"{origin}: {exc.problem}; {exc.fix}")

    def set_flag(self, field: _Field, value: Any, flag: str) -> None:
        """Apply a command-line flag; strings are parsed like variables."""
        try:
            if isinstance(value, str) and field.from_text is not _identity:
                value = field.from_text(value)
            self.values[field.key] = field.check(value)
            self.sources[field.key] = flag
        except ValueError as exc:
            self.problems.append(f"command-line flag {flag}: {exc}")
        except _WrongType:
            shown = "" if field.secret else _shown(value)
            self.problems.append(
                f"command-line flag {flag}: expected {field.expected}, got {_kind(value)}{shown}"
            )
        except _BadValue as exc:
            self.problems.append(f"command-line flag {flag}: {exc.problem}; {exc.fix}")

    def unknown(self, where: str, keypath: str, key: object, known: Any, what: str) -> None:
        self.problems.append(
            f"{where}: {keypath}: unknown key {str(key)!r} {what}; "
            f"{_suggestion(str(key), known)}remove it or fix its spelling "
            f"(known keys: {', '.join(known)})"
        )

    # -- tables ---------------------------------------------------------------------

    def apply_table(
        self, table: Mapping[Any, Any], where: str, prefix: str, label: str, in_env: bool
    ) -> None:
        """Apply a base table (``in_env`` False) or an ``[env.X]`` table."""
        for key, value in table.items():
            keypath = f"{prefix}{key}"
            if key in _TOP_FIELDS:
                self.set_toml(_TOP_FIELDS[key], value, where, keypath, label)
            elif key == "reporter":
                self.apply_section(
                    "reporter", _REPORTER_FIELDS, 'type = "sqlite"', value, where, keypath, label
                )
            elif key == "integrations":
                self.apply_section(
                    "integrations",
                    _INTEGRATION_FIELDS,
                    "celery = false",
                    value,
                    where,
                    keypath,
                    label,
                )
            elif key in _TARGET_KEYS:
                self.targets[key].extend(self.parse_targets(key, value, where, keypath))
            elif key == "env":
                if in_env:
                    self.problems.append(
                        f"{where}: {keypath}: [env] tables cannot be nested; "
                        f"move [{keypath}.*] to the top level as [env.<name>]"
                    )
                # At the top level, [env.*] tables are handled by the caller.
            else:
                known = (
                    [*_TOP_FIELDS, *_TABLE_KEYS] if not in_env else [*_TOP_FIELDS, *_TABLE_KEYS[:3]]
                )
                where_text = "in an [env.<name>] table" if in_env else "at the top level"
                if key == "strict":
                    self.problems.append(
                        f"{where}: {keypath}: 'strict' cannot be set in the file; "
                        f"set {_vars.TASKTRACE_STRICT}=1 in the environment instead"
                    )
                else:
                    self.unknown(where, keypath, key, known, where_text)

    def apply_section(
        self,
        table: str,
        fields: Mapping[str, _Field],
        example: str,
        value: Any,
        where: str,
        keypath: str,
        label: str,
    ) -> None:
        """A ``[reporter]`` or ``[integrations]`` table: each key is one of ``fields``."""
        if not isinstance(value, Mapping):
            self.problems.append(
                f"{where}: {keypath}: expected a table, got {_kind(value)}; "
                f"write it as a [{table}] section, e.g. {example}"
            )
            return
        for key, item in value.items():
            if key in fields:
                self.set_toml(fields[key], item, where, f"{keypath}.{key}", label)
            else:
                self.unknown(where, f"{keypath}.{key}", key, list(fields), f"in [{table}]")

    def parse_targets(
        self, kind: str, value: Any, where: str, keypath: str
    ) -> List[TargetSettings]:
        """Check a ``[[background_task]]``/``[[function_trace]]`` array; bad entries are
        reported and left out."""
        if not isinstance(value, (list, tuple)):
            self.problems.append(
                f"{where}: {keypath}: expected an array of tables, got {_kind(value)}; "
                f"write each entry as [[{kind}]] (double brackets) with function = "
                '"module:object"'
            )
            return []
        prefix = f"{where}: {keypath}"
        plain = _plain_functions(value) if len(value) >= _BULK_CHECK_MIN else None
        if plain is not None:
            # _make: the positional fields straight to tuple.__new__, twice as fast here.
            make = TargetSettings._make
            return [
                make((kind, function, None, None, None, True, f"{prefix}[{index}]", *_NO_LIVENESS))
                for index, function in enumerate(plain, start=1)
            ]
        found: List[TargetSettings] = []
        for index, entry in enumerate(value, start=1):
            # The common entry, a lone function = "module:name.path", is checked without
            # the full parser: the bootstrap parses every target in every process it
            # starts, and a table of thousands of targets must not cost it much.
            if type(entry) is dict and len(entry) == 1:
                function = entry.get("function")
                if type(function) is str and _is_plain_target(function):
                    found.append(TargetSettings(kind, function, source=f"{prefix}[{index}]"))
                    continue
            # Entries are counted from 1, as a reader counts the [[...]] headers.
            entry_path = f"{keypath}[{index}]"
            target = self.parse_target_entry(kind, entry, where, entry_path)
            if target is not None:
                found.append(target)
        return found

    def parse_target_entry(
        self, kind: str, entry: Any, where: str, entry_path: str
    ) -> Optional[TargetSettings]:
        from tasktrace.targets import parse_target

        if not isinstance(entry, Mapping):
            self.problems.append(
                f"{where}: {entry_path}: expected a table, got {_kind(entry)}; "
                f'write it as [[{kind}]] followed by function = "module:object"'
            )
            return None
        before = len(self.problems)
        allowed = _TARGET_KEYS[kind]
        options: Dict[str, Any] = {}
        for key, value in entry.items():
            keypath = f"{entry_path}.{key}"
            if key not in allowed:
                self.unknown(where, keypath, key, list(allowed), f"in [[{kind}]]")
            elif key == "enabled":
                if isinstance(value, bool):
                    options[key] = value
                else:
                    self.problems.append(
                        f"{where}: {keypath}: expected a boolean, got {_kind(value)}"
                        f"{_shown(value)}; write it like enabled = true"
                    )
            elif key in _LIVENESS_KEYS:
                parsed = self.parse_liveness_key(key, value, where, keypath)
                if parsed is not None:
                    options[key] = parsed
            elif not isinstance(value, str) or not value.strip():
                got = "an empty string" if isinstance(value, str) else _kind(value) + _shown(value)
                example = "billing.jobs:send_invoices" if key == "function" else "..."
                self.problems.append(
                    f"{where}: {keypath}: expected a non-empty string, got {got}; "
                    f'write it like {key} = "{example}"'
                )
            elif key == "function":
                try:
                    options[key] = str(parse_target(value))
                except ConfigurationError as exc:
                    self.problems.append(f"{where}: {keypath}: {exc}")
            else:
                options[key] = value
        if "function" not in entry:
            self.problems.append(
                f"{where}: {entry_path}: missing the required key 'function'; "
                'add function = "module:object.path"'
            )
        if ("grace" in options or "timezone" in options) and "schedule" not in options:
            key = "grace" if "grace" in options else "timezone"
            self.problems.append(
                f"{where}: {entry_path}.{key}: only means something with a schedule; "
                f'add schedule = "*/15 * * * *" (or remove {key})'
            )
        if "schedule" in options and _has_glob(options.get("function", "")):
            self.problems.append(
                f"{where}: {entry_path}.schedule: a schedule needs one task, but function = "
                f"{options['function']!r} is a glob that may match many; name one function"
            )
        if len(self.problems) > before:
            return None
        return TargetSettings(kind=kind, source=f"{where}: {entry_path}", **options)

    def parse_liveness_key(self, key: str, value: Any, where: str, keypath: str) -> Any:
        """``max_duration``, ``grace`` (durations), ``schedule`` and ``timezone``: the
        value to keep, or None after entering a problem."""
        from tasktrace import schedules

        examples = {
            "max_duration": 'max_duration = "30m"',
            "grace": 'grace = "5m"',
            "schedule": schedules.SCHEDULE_EXAMPLE,
            "timezone": schedules.TIMEZONE_EXAMPLE,
        }
        if not isinstance(value, str) or not value.strip():
            got = "an empty string" if isinstance(value, str) else _kind(value) + _shown(value)
            self.problems.append(
                f"{where}: {keypath}: expected a non-empty string, got {got}; "
                f"write it like {examples[key]}"
            )
            return None
        try:
            if key in ("max_duration", "grace"):
                return _vars.parse_duration(value)
            if key == "schedule":
                schedules.check_syntax(value)
            else:
                schedules.check_timezone_syntax(value)
        except schedules.ScheduleError as exc:  # its message has an example already
            self.problems.append(f"{where}: {keypath}: {exc}")
            return None
        except ValueError as exc:
            self.problems.append(f"{where}: {keypath}: {exc}; write it like {examples[key]}")
            return None
        return value


#: Target keys of SPEC section 7 (``[[background_task]]`` only).
_LIVENESS_KEYS = ("max_duration", "schedule", "grace", "timezone")


def _has_glob(function: str) -> bool:
    return any(c in function.partition(":")[2] for c in "*?[")


#: The liveness fields of a target that sets none (max_duration, schedule, grace, timezone).
_NO_LIVENESS = (None, None, None, None)

#: From this many entries on, a target array is first checked in bulk (one regular
#: expression over all of them), which costs a compile but then far less per entry.
_BULK_CHECK_MIN = 64

#: Lines of ``module:object.path`` made of ASCII names only (see :func:`_is_plain_target`).
_PLAIN_LINES = (
    r"(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
    r":[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\n)*"
)


def _plain_functions(entries: Any) -> Optional[List[str]]:
    """The functions of ``entries`` if each is a lone plain ``function = "..."``, else None.

    One pass of a regular expression over all of them: a table of thousands of targets is
    checked in a few milliseconds (None sends every entry through the full checks).
    """
    try:
        functions = [
            entry["function"] for entry in entries if type(entry) is dict and len(entry) == 1
        ]
        if len(functions) != len(entries):
            return None
        block = "\n".join(functions) + "\n"
    except (KeyError, TypeError):
        return None
    # A function holding a newline would pass as two lines: count them.
    if block.count("\n") != len(functions) or re.fullmatch(_PLAIN_LINES, block) is None:
        return None
    return functions


def _is_plain_target(text: str) -> bool:
    """Whether ``text`` is ``module:object.path`` of ASCII names only, no globs, no spaces.

    Such a target is exactly what :func:`tasktrace.targets.parse_target` accepts and
    returns unchanged; anything else goes through it for its checks and messages.
    """
    if not text.isascii() or text.count(":") != 1:
        return False
    for part in text.replace(":", ".").split("."):  # noqa: SIM110 - faster than all()
        if not part.isidentifier():
            return False
    return True


def _read_variable(env: Mapping[str, str], names: Tuple[str, ...]) -> Optional[Tuple[str, str]]:
    """The first of ``names`` set to a non-blank value, as ``(name, text)``.

    A blank variable counts as unset, as the OpenTelemetry specification says, so
    ``TASKTRACE_APP_NAME=`` in a wrapper script does not override the file.
    """
    for name in names:
        text = env.get(name)
        if text is not None and text.strip():
            return name, text
    return None


_NO_ENV: Mapping[str, str] = MappingProxyType({})
_NO_OVERRIDES: Mapping[str, Any] = MappingProxyType({})


def _build(
    data: Mapping[str, Any],
    source: Optional[str],
    *,
    environment: Optional[str],
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    key_prefix: str = "",
) -> Tuple[Settings, List[str]]:
    """Build settings from every layer; return them with the problems found.

    Invalid values are reported and skipped, so the settings returned hold the value of
    the next lower layer for every key that had a problem.
    """
    builder = _Builder()
    where = source if source is not None else "<no config file>"

    # Which [env.X] table and strictness: flag > argument > variable.
    env_name: Optional[str] = None
    env_origin = "default"
    if overrides.get("environment") is not None:
        env_name, env_origin = overrides["environment"], "--environment"
    elif environment is not None:
        env_name, env_origin = environment, "--environment"
    else:
        found = _read_variable(env, (_vars.TASKTRACE_ENVIRONMENT,))
        if found is not None:
            env_origin, env_name = found
    if env_name is not None and (not isinstance(env_name, str) or not env_name.strip()):
        builder.problems.append(
            f"{env_origin}: the environment name must be a non-empty string, got "
            f"{_kind(env_name)}; give the name of an [env.<name>] table"
        )
        env_name, env_origin = None, "default"
    elif env_name is not None:
        env_name = env_name.strip()

    strict = False
    strict_origin = "default"
    found = _read_variable(env, (_vars.TASKTRACE_STRICT,))
    if found is not None:
        try:
            strict, strict_origin = _vars.parse_bool(found[1]), found[0]
        except ValueError as exc:
            builder.problems.append(
                f"environment variable {found[0]}: {exc}; set it like {found[0]}=1"
            )
    if overrides.get("strict") is not None:
        value = overrides["strict"]
        try:
            strict = _vars.parse_bool(value) if isinstance(value, str) else _check_bool(value)
            strict_origin = "--strict"
        except (ValueError, _WrongType):
            builder.problems.append(
                f"command-line flag --strict: expected a boolean, got {_kind(value)}"
            )

    # Base table, then the selected [env.X] table; every [env.*] table is checked.
    if not isinstance(data, Mapping):
        builder.problems.append(
            f"{where}: expected a table of settings at the top, got {_kind(data)}"
        )
        data = {}
    builder.apply_table(data, where, key_prefix, where, in_env=False)
    env_tables: Dict[str, Mapping[Any, Any]] = {}
    raw_env = data.get("env", {})
    if not isinstance(raw_env, Mapping):
        builder.problems.append(
            f"{where}: {key_prefix}env: expected a table of [env.<name>] tables, got "
            f"{_kind(raw_env)}; write [env.production] and put settings under it"
        )
        raw_env = {}
    for name, table in raw_env.items():
        keypath = f"{key_prefix}env.{name}"
        if not isinstance(table, Mapping):
            builder.problems.append(
                f"{where}: {keypath}: expected a table, got {_kind(table)}; write it as "
                f"[env.{name}] followed by the settings to change"
            )
            continue
        env_tables[str(name)] = table
        if str(name) == env_name:
            builder.apply_table(table, where, f"{keypath}.", f"{where} [env.{name}]", in_env=True)
        else:
            # Checked but not applied: a typo in [env.production] is found in development.
            scratch = _Builder()
            scratch.apply_table(table, where, f"{keypath}.", where, in_env=True)
            builder.problems.extend(scratch.problems)
    if env_name is not None and source is not None and env_name not in env_tables:
        existing = ", ".join(repr(n) for n in env_tables) or "none (the file has no [env.*] tables)"
        builder.problems.append(
            f"{where}: [env.{env_name}] does not exist but {env_origin} selects it; "
            f"{_suggestion(env_name, list(env_tables))}add an [env.{env_name}] table or "
            f"choose one of the environments that exist: {existing}"
        )

    # OpenTelemetry variables, then tasktrace's, then flags.
    for name, key, parse_text, example in _OTEL_VARIABLES:
        found = _read_variable(env, (name,))
        if name == _vars.OTEL_SDK_DISABLED and found and found[1].strip().lower() != "true":
            continue  # only "true" has an effect, as the specification says
        if found is not None:
            builder.set_text(
                _FIELDS[key], found[1], f"environment variable {name}", example, parse_text
            )
    for names, key, example in _VARIABLES:
        found = _read_variable(env, names)
        if found is not None:
            builder.set_text(_FIELDS[key], found[1], f"environment variable {found[0]}", example)
    for key, value in overrides.items():
        if key in ("environment", "strict") or value is None:
            continue
        field = _FIELDS.get(key)
        if field is None:
            builder.problems.append(
                f"command-line flag: unknown setting {key!r}; "
                f"{_suggestion(str(key), list(_FIELDS))}known settings: {', '.join(_FIELDS)}"
            )
            continue
        builder.set_flag(field, value, _flag_for(key))

    if builder.sources["app_name"] == "default":
        _app_name_from_otel(builder, env)

    values = builder.values
    reporter = ReporterSettings(
        **{f.attribute: values[f.key] for f in _REPORTER_FIELDS.values()},
    )
    sources = dict(builder.sources)
    sources["environment"] = env_origin
    sources["strict"] = strict_origin
    settings = Settings(
        **{f.attribute: values[f.key] for f in _TOP_FIELDS.values()},
        reporter=reporter,
        integrations=IntegrationSettings(
            **{f.attribute: values[f.key] for f in _INTEGRATION_FIELDS.values()},
        ),
        background_tasks=tuple(builder.targets["background_task"]),
        function_traces=tuple(builder.targets["function_trace"]),
        environment=env_name,
        config_file=source,
        strict=strict,
        sources=MappingProxyType(sources),
    )
    return settings, builder.problems


def _app_name_from_otel(builder: _Builder, env: Mapping[str, str]) -> None:
    """Name the app from ``OTEL_SERVICE_NAME``, else from ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``, as OpenTelemetry would (nothing else named it)."""
    found = _read_variable(env, (_vars.OTEL_SERVICE_NAME,))
    if found is not None:
        builder.set_text(
            _FIELDS["app_name"], found[1], f"environment variable {found[0]}", "billing-worker"
        )
        return
    service = builder.values["resource_attributes"].get("service.name", "")
    if service.strip():
        builder.values["app_name"] = service.strip()
        builder.sources["app_name"] = builder.sources["resource_attributes"] + " (service.name)"


def parse(
    data: Mapping[str, Any],
    source: str,
    *,
    environment: Optional[str] = None,
    env: Mapping[str, str] = _NO_ENV,
    overrides: Mapping[str, Any] = _NO_OVERRIDES,
) -> Settings:
    """Build ``Settings`` from parsed TOML data, variables and flags. Pure: no I/O.

    Precedence, highest first: ``overrides`` (command-line flags) > ``TASKTRACE_*``
    variables in ``env`` > the ``[env.<environment>]`` table > the base table > defaults.
    The environment is chosen by ``overrides["environment"]``, else ``environment``, else
    ``TASKTRACE_ENVIRONMENT``. Every ``[env.*]`` table is checked, the chosen one applied:
    its scalar keys and ``[env.X.reporter]`` keys replace the base ones, its
    ``[[background_task]]``/``[[function_trace]]`` entries are appended to the base lists.

    Args:
        data: the parsed TOML table (for ``pyproject.toml``, its ``[tool.tasktrace]``).
        source: the file it came from, used in messages, ``sources`` and ``config_file``.
        environment: the ``[env.<name>]`` table to apply (like ``--environment``).
        env: the environment variables to read (nothing is read from ``os.environ``).
        overrides: command-line flags by dotted key (``"app_name"``, ``"reporter.type"``,
            ``"environment"``, ``"strict"``); strings are parsed like variables; None
            values are ignored.

    Returns:
        The settings; ``sources`` maps every dotted key (plus ``environment`` and
        ``strict``) to ``"default"``, ``source``, ``"<source> [env.X]"``, a variable name
        or ``"--flag"``.

    Raises:
        ConfigurationError: with *every* problem found, each naming the file (or variable
            or flag), the key path (targets counted from 1, e.g.
            ``background_task[2].function``), what is wrong and the fix. Secret values
            (headers, URL passwords) never appear in messages.
    """
    return _parse_file_data(data, source, environment, env, overrides, key_prefix="")


def _parse_file_data(
    data: Mapping[str, Any],
    source: str,
    environment: Optional[str],
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    key_prefix: str,
) -> Settings:
    settings, problems = _build(
        data,
        source,
        environment=environment,
        env=env,
        overrides=overrides,
        key_prefix=key_prefix,
    )
    if problems:
        raise ConfigurationError(problems)
    return settings


def settings_from_environment(env: Mapping[str, str], *, warn: bool = True) -> Settings:
    """Defaults plus ``TASKTRACE_*`` variables; no file is read. Never raises.

    Used at import time by ``tasktrace._state`` for programs that never call
    ``initialize()``. A bad variable does not fail the import: its setting keeps the
    default and (when ``warn``) one warning per problem is logged to the ``tasktrace``
    logger.
    """
    settings, problems = _build({}, None, environment=None, env=env, overrides=_NO_OVERRIDES)
    if problems and warn:
        import logging  # late: only when there is something to say

        logger = logging.getLogger("tasktrace")
        for problem in problems:
            logger.warning("tasktrace: %s (using the default)", problem)
    return settings
