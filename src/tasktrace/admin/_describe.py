"""What ``show-config`` and ``generate-config`` print: ``describe`` and ``STARTER_CONFIG``.

They live with the admin commands, not in :mod:`tasktrace.config`, which every
instrumented process loads at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, List, Tuple

from tasktrace.config._redaction import _REDACTED, redact_url
from tasktrace.config._schema import _FIELDS
from tasktrace.config._settings import Settings


def _display(value: Any) -> str:
    """A TOML-like rendering for show-config."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_display(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_display(k)} = {_display(v)}" for k, v in value.items()) + "}"
    return repr(value)


def describe(settings: Settings) -> List[Tuple[str, str, str]]:
    """The effective settings for ``show-config``: ``(dotted key, value, source)`` rows.

    Values are rendered TOML-like; header values and URL credentials are redacted. After
    the settings come ``environment``, ``strict``, ``config_file`` and one row per target
    (``background_task[1]``, ...), whose source is the config entry it came from.
    """
    rows: List[Tuple[str, str, str]] = []
    sources = settings.sources
    for key, field in _FIELDS.items():
        owner: Any = settings.reporter if key.startswith("reporter.") else settings
        if key.startswith("integrations."):
            owner = settings.integrations
        value = getattr(owner, field.attribute)
        if key == "reporter.headers":
            text = (
                "{" + ", ".join(f'"{name}" = "{_REDACTED}"' for name in value) + "}"
                if value
                else "{}"
            )
        elif key == "reporter.endpoint":
            text = _display(redact_url(value))
        else:
            text = _display(value)
        rows.append((key, text, sources.get(key, "default")))
    rows.append(
        ("environment", _display(settings.environment), sources.get("environment", "default"))
    )
    rows.append(("strict", _display(settings.strict), sources.get("strict", "default")))
    rows.append(
        ("config_file", _display(settings.config_file), sources.get("config_file", "default"))
    )
    for kind, targets in (
        ("background_task", settings.background_tasks),
        ("function_trace", settings.function_traces),
    ):
        for index, target in enumerate(targets, start=1):
            options = [
                f"{name}={getattr(target, name)!r}"
                for name in (
                    "name",
                    "group",
                    "application",
                    "schedule",
                    "grace",
                    "timezone",
                    "max_duration",
                )
                if getattr(target, name, None) is not None
            ]
            if not target.enabled:
                options.append("enabled=False")
            text = target.function + (f" ({', '.join(options)})" if options else "")
            rows.append((f"{kind}[{index}]", text, target.source or "default"))
    return rows


STARTER_CONFIG = """\
# tasktrace configuration.
#
# Run your program with:   tasktrace-admin run-program python job.py
# Check this file with:    tasktrace-admin validate-config
# See what is in effect:   tasktrace-admin show-config
#
# Precedence, highest first: command-line flags > TASKTRACE_* environment variables >
# the [env.<name>] table chosen by TASKTRACE_ENVIRONMENT > this file > defaults.

# The application every transaction is reported under.        (TASKTRACE_APP_NAME)
app_name = "my-worker"

# false: nothing is patched and nothing is recorded.            (TASKTRACE_ENABLED)
enabled = true

# critical, error, warning, info or debug.                      (TASKTRACE_LOG_LEVEL)
log_level = "warning"

# "stderr", "stdout" or a file path. tasktrace never writes to stdout by default.
log_file = "stderr"                                             # (TASKTRACE_LOG)

# Seconds between deliveries by the background thread.    (TASKTRACE_HARVEST_INTERVAL)
harvest_interval = 5.0

# The most seconds spent delivering at exit.              (TASKTRACE_SHUTDOWN_TIMEOUT)
shutdown_timeout = 2.5

# The most finished transactions held between deliveries (the oldest are dropped and
# counted beyond it), and the most function traces kept per transaction.
# buffer_size = 10000
# max_segments = 1000

# Record each task's thread CPU time (two system calls per task).     (TASKTRACE_CPU_TIME)
# cpu_time = false

[reporter]
# "sqlite" (default), "otlp", "console", "jsonl", a plugin name, or a list of them,
# e.g. ["sqlite", "otlp"].                                      (TASKTRACE_REPORTER)
type = "sqlite"

# The SQLite database (sqlite) or output file (jsonl). Default:
# $XDG_DATA_HOME/tasktrace/tasktrace.db or ~/.local/share/tasktrace/tasktrace.db.
# path = "~/.local/share/tasktrace/tasktrace.db"              # (TASKTRACE_DB)

# OTLP/HTTP collector; /v1/traces is appended. (TASKTRACE_OTLP_ENDPOINT, else
# OTEL_EXPORTER_OTLP_ENDPOINT)
# endpoint = "http://127.0.0.1:4318"

# Extra HTTP headers for the collector. They are secrets: tasktrace never prints them.
# Prefer the variable TASKTRACE_OTLP_HEADERS="api-key=..." to keep them out of files.
# headers = { "api-key" = "..." }

# OTLP: full URLs for each signal, used as given (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
# OTEL_EXPORTER_OTLP_METRICS_ENDPOINT); the metrics' temporality ("cumulative" or
# "delta"), wire format ("http/json" or "http/protobuf") and histogram ("exponential", or
# "explicit" for the OpenTelemetry Collector's Prometheus scrape exporter).
# metrics = true                                               # (OTEL_METRICS_EXPORTER=none: off)
# traces_endpoint = "http://127.0.0.1:4318/v1/traces"
# metrics_endpoint = "http://127.0.0.1:4318/v1/metrics"
# metrics_temporality = "cumulative"
# metrics_protocol = "http/json"
# metrics_histogram = "exponential"

# Seconds one export may take, retries included; a CA bundle for TLS; "gzip" or "none".
# timeout = 10.0
# ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
# compression = "gzip"

# SQLite: most rows stored per task name and minute, a random sample spread over the
# minute; errored ones have a budget of their own. Counts, errors, totals and report's
# percentiles stay exact whatever the sample. 0: store every row.
# max_rows_per_name = 600
# max_error_rows_per_name = 60

# SQLite: how long data is kept ("45s", "30m", "2h", "7d"), and the size the store's data
# stays under ("500MB", "1GiB"): the oldest detail goes first, counts last.
# retention = "7d"
# max_size = "1GiB"

# Each [[background_task]] makes every call of a function a background-task transaction.
# function is "module:object.path"; each dotted segment after ':' may be a glob
# (*, ?, [abc]), e.g. "billing.jobs:Exporter.*". Use "__main__:main" for the script.
# Uncomment this example and point it at your own code, or let
# `tasktrace-admin generate-config --target MODULE:OBJECT` write the entries.
# [[background_task]]
# function = "my_app.jobs:run"
# name = "Run the job"          # default: "module:qualname" of the function
# group = "Task"                # default: "Function"
# application = "my-batch"      # default: app_name
# enabled = true
# max_duration = "30m"          # past it the task is overdue: a warning; check fails
# schedule = "0 3 * * *"        # cron (5 fields), "@daily", "@hourly", ... or "every 10m"
# grace = "5m"                  # how late a run may start and still be on time
# timezone = "Europe/Berlin"    # the zone the cron fields are read in (default: local)

# Each [[function_trace]] records a segment inside the current transaction.
# [[function_trace]]
# function = "my_app.db:Client.query"
# name = "query"
# group = "Database"
# enabled = true

# Per-environment changes, applied when TASKTRACE_ENVIRONMENT=production. Any key above
# may appear here, including a [env.production.reporter] table; its [[background_task]]
# and [[function_trace]] entries are added to the ones above.
# [env.production]
# app_name = "my-worker-prod"
# [env.production.reporter]
# type = ["sqlite", "otlp"]
"""
