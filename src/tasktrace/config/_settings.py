"""The immutable settings every other module reads: ``Settings``, ``ReporterSettings``,
``TargetSettings``.

Named tuples rather than dataclasses, because ``dataclasses`` imports ``inspect`` and these
are loaded by the bootstrap in every process (about 6 ms of start-up); derive changed
copies with ``settings._replace(...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, Optional, Tuple

from tasktrace.config._redaction import redact_url, redacted_headers

DEFAULT_APP_NAME = "Python Application"
#: SQLite: errorless rows stored per task name and minute. At about 80 bytes a row (a task
#: with a function trace), with its share of blocks and metrics rows, one busy task name
#: adds under 4.2 MB an hour (about 100 MB a day): see benchmarks/bench_growth.py.
DEFAULT_MAX_ROWS_PER_NAME = 600
#: SQLite: errored rows stored per task name and minute (their tracebacks make them some
#: ten times larger); every error is still counted in the metrics.
DEFAULT_MAX_ERROR_ROWS_PER_NAME = 60

_EMPTY: Mapping[str, str] = MappingProxyType({})


#: How long the SQLite store keeps data by default: 7 days, in seconds.
DEFAULT_RETENTION = 7 * 86400.0
#: The SQLite store's default size limit: 1 GiB.
DEFAULT_MAX_SIZE = 1024**3
#: The smallest ``max_size`` honoured: below it one harvest of a busy worker (a few MB of
#: blocks) could not be kept with its metrics, so a smaller value is raised to it.
MIN_MAX_SIZE = 16 * 1024**2


class ReporterSettings(NamedTuple):
    """Where finished transactions go (``[reporter]``).

    ``repr()`` (and so ``repr()``/``str()`` of ``Settings``) redacts header values and any
    password or token in ``endpoint``.
    """

    #: Reporter names, in order: built-ins ``sqlite``, ``otlp``, ``console``, ``jsonl``, or
    #: the name of a plugin in the ``tasktrace.reporters`` entry-point group.
    types: Tuple[str, ...] = ("sqlite",)
    #: The SQLite database (``sqlite``) or output file (``jsonl``); None means the default
    #: (``$XDG_DATA_HOME/tasktrace/tasktrace.db`` or ``~/.local/share/tasktrace/...``).
    path: Optional[str] = None
    #: OTLP/HTTP base URL; ``/v1/traces`` is appended unless it is already there.
    endpoint: str = "http://127.0.0.1:4318"
    #: Extra HTTP headers for the OTLP exporter. Secret: never printed or logged.
    headers: Mapping[str, str] = _EMPTY
    #: Seconds one export may take, retries included.
    timeout: float = 10.0
    #: The full URL spans are posted to, used as given (None: ``endpoint`` + ``/v1/traces``).
    traces_endpoint: Optional[str] = None
    #: The full URL metrics are posted to, used as given (None: ``endpoint`` +
    #: ``/v1/metrics``).
    metrics_endpoint: Optional[str] = None
    #: OTLP: whether metrics are posted beside the spans (off for a collector that takes
    #: traces only, such as Jaeger's).
    metrics: bool = True
    #: ``"cumulative"`` (start time: the process's start) or ``"delta"``.
    metrics_temporality: str = "cumulative"
    #: How metrics are written: ``"http/json"`` (as spans are) or ``"http/protobuf"``.
    metrics_protocol: str = "http/json"
    #: ``tasktrace.task.duration`` as an ``"exponential"`` histogram (exact to 0.55%) or an
    #: ``"explicit"`` one (fixed bounds, for the Collector's Prometheus scrape exporter).
    metrics_histogram: str = "exponential"
    #: A CA bundle file for TLS verification of the collector (None: httpx's default).
    ca_bundle: Optional[str] = None
    #: ``"gzip"`` or ``"none"``.
    compression: str = "gzip"
    #: SQLite: most errorless rows stored per task name and minute (a random sample spread
    #: over the minute); counts, errors, totals and percentiles stay exact in the metrics
    #: table. 0: no limit.
    max_rows_per_name: int = DEFAULT_MAX_ROWS_PER_NAME
    #: SQLite: most errored rows stored per task name and minute, apart from the others.
    #: 0: no limit.
    max_error_rows_per_name: int = DEFAULT_MAX_ERROR_ROWS_PER_NAME
    #: SQLite: data older than this many seconds is deleted (``retention = "7d"``).
    retention: float = DEFAULT_RETENTION
    #: SQLite: the store's file is kept under this many bytes (``max_size = "1GiB"``):
    #: the oldest transaction detail goes first, counts last.
    max_size: int = DEFAULT_MAX_SIZE

    def __repr__(self) -> str:
        return (
            f"ReporterSettings(types={self.types!r}, path={self.path!r}, "
            f"endpoint={redact_url(self.endpoint)!r}, "
            f"traces_endpoint={_redacted(self.traces_endpoint)!r}, "
            f"metrics_endpoint={_redacted(self.metrics_endpoint)!r}, "
            f"metrics={self.metrics!r}, "
            f"metrics_temporality={self.metrics_temporality!r}, "
            f"metrics_protocol={self.metrics_protocol!r}, "
            f"metrics_histogram={self.metrics_histogram!r}, "
            f"headers={redacted_headers(self.headers)!r}, timeout={self.timeout!r}, "
            f"ca_bundle={self.ca_bundle!r}, compression={self.compression!r}, "
            f"max_rows_per_name={self.max_rows_per_name!r}, "
            f"max_error_rows_per_name={self.max_error_rows_per_name!r}, "
            f"retention={self.retention!r}, max_size={self.max_size!r})"
        )


#: The job systems tasktrace instruments when their library is imported (``[integrations]``).
INTEGRATIONS = ("celery", "rq", "dramatiq", "huey", "arq")
#: ``[integrations] propagate``: how trace context goes from the enqueueing transaction to
#: the job's (its parent, a span link, or not at all).
PROPAGATE_MODES = ("parent", "link", "none")
DEFAULT_PROPAGATE = "parent"


class IntegrationSettings(NamedTuple):
    """Which job systems are instrumented, and how trace context is carried (``[integrations]``)."""

    celery: bool = True
    rq: bool = True
    dramatiq: bool = True
    huey: bool = True
    arq: bool = True
    #: ``"parent"``, ``"link"`` or ``"none"`` (see :data:`PROPAGATE_MODES`).
    propagate: str = DEFAULT_PROPAGATE


def _redacted(url: Optional[str]) -> Optional[str]:
    return None if url is None else redact_url(url)


class TargetSettings(NamedTuple):
    """One ``[[background_task]]`` or ``[[function_trace]]`` entry."""

    #: ``"background_task"`` or ``"function_trace"``.
    kind: str
    #: ``"module:object.path"``, globs allowed per segment of the object path.
    function: str
    name: Optional[str] = None
    group: Optional[str] = None
    application: Optional[str] = None
    enabled: bool = True
    #: Where the entry came from, e.g. ``"tasktrace.toml: background_task[2]"``.
    source: str = ""
    #: Seconds a task may run before it is *overdue* (``max_duration = "30m"``).
    max_duration: Optional[float] = None
    #: When the task is due (``schedule = "*/15 * * * *"``, ``"@daily"``, ``"every 10m"``);
    #: see :mod:`tasktrace.schedules`.
    schedule: Optional[str] = None
    #: Seconds a scheduled run may start late and still be on time (default 5 minutes).
    grace: Optional[float] = None
    #: The IANA zone the cron schedule is read in (None: the machine's local zone).
    timezone: Optional[str] = None

    @property
    def module(self) -> str:
        """The module part of ``function``."""
        return self.function.partition(":")[0]

    @property
    def object_path(self) -> str:
        """The object path part of ``function``."""
        return self.function.partition(":")[2]

    @property
    def task_name(self) -> str:
        """The name this target's transactions get: ``name``, else ``function``."""
        return self.name or self.function


class Settings(NamedTuple):
    """The effective settings of the agent."""

    app_name: str = DEFAULT_APP_NAME
    enabled: bool = True
    log_level: str = "warning"
    #: ``"stderr"``, ``"stdout"`` or a file path.
    log_file: str = "stderr"
    #: Seconds between deliveries by the harvest thread.
    harvest_interval: float = 5.0
    #: Most seconds spent delivering at exit.
    shutdown_timeout: float = 2.5
    #: Most finished transactions held between harvests; the oldest are dropped beyond it.
    buffer_size: int = 10_000
    #: Most function traces kept per transaction; further ones are counted, not kept.
    max_segments: int = 1_000
    #: Measure each transaction's thread CPU time (``TransactionRecord.cpu_time``; None
    #: when off). Off by default: the thread CPU clock is a system call, two per task.
    cpu_time: bool = False
    #: ``service.version`` of the OTLP resource (None: not sent).
    app_version: Optional[str] = None
    #: Extra OTLP resource attributes (``OTEL_RESOURCE_ATTRIBUTES``), overriding detected ones.
    resource_attributes: Mapping[str, str] = _EMPTY
    reporter: ReporterSettings = ReporterSettings()
    integrations: IntegrationSettings = IntegrationSettings()
    background_tasks: Tuple[TargetSettings, ...] = ()
    function_traces: Tuple[TargetSettings, ...] = ()
    #: The ``[env.<name>]`` table applied, if any.
    environment: Optional[str] = None
    #: The file the settings came from, if any.
    config_file: Optional[str] = None
    #: ``TASKTRACE_STRICT``: configuration and target errors are fatal.
    strict: bool = False
    #: For each setting's dotted key, where its value came from: ``"default"``, a file
    #: path, ``"<file> [env.X]"``, a variable name or ``"--flag"``.
    sources: Mapping[str, str] = _EMPTY
