"""Unit tests for the OTLP metrics (tasktrace.reporters._otlp_metrics and the
OtlpMetricsReporter of tasktrace.reporters.otlp), with httpx.MockTransport.

Every body is parsed strictly (unknown fields fail) into the official
``ExportMetricsServiceRequest`` of ``opentelemetry-proto``.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from typing import Any, Dict, List, Tuple

import httpx
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from tasktrace import resource
from tasktrace.config import Settings, parse
from tasktrace.histogram import Histogram
from tasktrace.recorder import HarvestRecorder
from tasktrace.recorder._aggregation import aggregate
from tasktrace.records import DropCount, ErrorRecord, TransactionRecord
from tasktrace.reporters._otlp_metrics import MetricSeries
from tasktrace.reporters.base import Batch
from tasktrace.reporters.otlp import OtlpMetricsReporter, OtlpReporter, metrics_url


def _record(duration: float, *, name: str = "jobs:run", error: bool = False) -> TransactionRecord:
    errors = (ErrorRecord("builtins:ValueError", "bad", "tb", time.time()),) if error else ()
    return TransactionRecord(
        app="fleet",
        name=name,
        group="Function",
        background=True,
        start=time.time(),
        duration=duration,
        exclusive=duration,
        cpu_time=None,
        pid=os.getpid(),
        thread_id=threading.get_ident(),
        errors=errors,
        attributes={},
        segments=(),
        trace_id=1,
        span_id=1,
    )


class Collector:
    """A MockTransport handler: answers with ``codes`` in turn (then 200), keeps bodies."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.metrics: List[ExportMetricsServiceRequest] = []
        self.raw: List[Dict[str, Any]] = []
        self.paths: List[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(str(request.url))
        code = self.codes.pop(0) if self.codes else 200
        if code == 200 and request.url.path.endswith("/v1/metrics"):
            body = gzip.decompress(request.content)
            message = ExportMetricsServiceRequest()
            json_format.Parse(body, message)  # strict: unknown fields fail
            self.metrics.append(message)
            self.raw.append(json.loads(body))
        return httpx.Response(code, json={})


_DEFAULTS = Settings()


def _reporters(collector: Collector, settings: Settings = _DEFAULTS) -> OtlpMetricsReporter:
    spans = OtlpReporter(
        settings,
        endpoint=None if settings.reporter.metrics_endpoint else "http://collector:4318",
        timeout=2.0,
        transport=httpx.MockTransport(collector),
        sleep=lambda seconds: None,
    )
    return spans.metrics


def _batch(records: List[TransactionRecord], drops: Tuple[DropCount, ...] = ()) -> Batch:
    return Batch(records=tuple(records), metrics=aggregate(records), drops=drops, pid=os.getpid())


def _points(message: ExportMetricsServiceRequest) -> Dict[Tuple[str, str], Any]:
    """Histogram points by (task.name, task.outcome)."""
    out = {}
    for rm in message.resource_metrics:
        for metric in rm.scope_metrics[0].metrics:
            if metric.name == "tasktrace.task.duration":
                for point in metric.exponential_histogram.data_points:
                    attrs = {a.key: a.value.string_value for a in point.attributes}
                    out[(attrs["task.name"], attrs["task.outcome"])] = point
    return out


def _dropped(message: ExportMetricsServiceRequest) -> Dict[str, int]:
    out = {}
    for rm in message.resource_metrics:
        for metric in rm.scope_metrics[0].metrics:
            if metric.name == "tasktrace.dropped":
                assert metric.sum.is_monotonic
                for point in metric.sum.data_points:
                    out[point.attributes[0].value.string_value] = point.as_int
    return out


def test_exponential_histogram_shape_and_exact_outcome_split() -> None:
    """The body parses into ExportMetricsServiceRequest; each outcome's point holds exactly
    its calls' histogram (scale 6), count and sum, with min/max when they are exact."""
    collector = Collector()
    metrics = _reporters(collector)
    ok_durations = [0.001 * (i + 1) for i in range(50)]
    error_durations = [0.5, 0.75, 1.5]
    records = [_record(d) for d in ok_durations] + [_record(d, error=True) for d in error_durations]
    records.append(_record(0.2, name="jobs:other"))
    result = metrics.export(_batch(records, (DropCount("fleet", "buffer_full", 7),)))
    assert result.success and result.exported == len(records)
    (message,) = collector.metrics
    metric = message.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.name == "tasktrace.task.duration" and metric.unit == "s"
    assert metric.exponential_histogram.aggregation_temporality == 2  # cumulative
    points = _points(message)
    assert set(points) == {("jobs:run", "ok"), ("jobs:run", "error"), ("jobs:other", "ok")}
    for outcome, durations in (("ok", ok_durations), ("error", error_durations)):
        point = points[("jobs:run", outcome)]
        expected = Histogram.of(durations)
        offset, counts = expected.positive_buckets()
        assert point.scale == 6
        assert point.count == len(durations) == sum(point.positive.bucket_counts)
        assert point.sum == pytest.approx(sum(durations))
        assert (point.positive.offset, list(point.positive.bucket_counts)) == (offset, counts)
        assert not point.HasField("min")  # the window mixed outcomes: extremes unknown
    other = points[("jobs:other", "ok")]
    assert (other.min, other.max, other.count) == (0.2, 0.2, 1)
    assert _dropped(message) == {"buffer_full": 7}
    attrs = {a.key for a in message.resource_metrics[0].resource.attributes}
    assert {"service.name", "service.instance.id", "host.name", "process.pid"} <= attrs


def test_cumulative_series_start_at_process_start_and_grow() -> None:
    """Cumulative points all start at the process's start; counts only grow; time moves."""
    collector = Collector()
    metrics = _reporters(collector)
    metrics.export(_batch([_record(0.01)] * 3, (DropCount("fleet", "buffer_full", 2),)))
    metrics.export(_batch([_record(0.02)] * 4, (DropCount("fleet", "buffer_full", 1),)))
    first, second = (_points(m)[("jobs:run", "ok")] for m in collector.metrics)
    start = resource.process_start_ns()
    assert first.start_time_unix_nano == second.start_time_unix_nano == start
    assert second.time_unix_nano >= first.time_unix_nano > start
    assert (first.count, second.count) == (3, 7)
    assert [_dropped(m)["buffer_full"] for m in collector.metrics] == [2, 3]


def test_delta_temporality_from_the_variable() -> None:
    """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta: each point covers the time
    since the previous one, with only its own calls."""
    settings = parse(
        {}, "t.toml", env={"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "DELTA"}
    )
    collector = Collector()
    metrics = _reporters(collector, settings)
    metrics.export(_batch([_record(0.01)] * 3))
    metrics.export(_batch([_record(0.02)] * 4))
    first, second = (_points(m)[("jobs:run", "ok")] for m in collector.metrics)
    assert (
        collector.metrics[0]
        .resource_metrics[0]
        .scope_metrics[0]
        .metrics[0]
        .exponential_histogram.aggregation_temporality
        == 1
    )
    assert second.start_time_unix_nano == first.time_unix_nano
    assert (first.count, second.count) == (3, 4)


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_failed_export_is_kept_and_delivered_once(temporality: str) -> None:
    """A 503 keeps the values (said as kept, not dropped); the next accepted export carries
    them, and nothing is counted twice."""
    settings = parse(
        {}, "t.toml", env={"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": temporality}
    )
    collector = Collector(503, 503, 503, 503, 503, 503, 503, 503)
    metrics = _reporters(collector, settings)
    failed = metrics.export(_batch([_record(0.01)] * 3)._replace(deadline=time.monotonic()))
    assert not failed.success and failed.kept == 3 and failed.dropped == 0
    collector.codes = []
    result = metrics.export(_batch([_record(0.01)] * 2))
    assert result.success and result.exported == 5
    (message,) = collector.metrics
    assert _points(message)[("jobs:run", "ok")].count == 5


def test_unsent_metrics_are_dropped_at_shutdown_with_a_reason() -> None:
    """What no collector took by shutdown is said as dropped, under the failure's reason."""
    collector = Collector(*[503] * 50)
    metrics = _reporters(collector)
    metrics.export(_batch([_record(0.01)] * 3)._replace(deadline=time.monotonic()))
    result = metrics.shutdown()
    assert (result.dropped, result.reason) == (3, "export_failed")


def test_per_signal_endpoints_are_used_as_given() -> None:
    """OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT are full URLs: nothing is appended;
    the base endpoint gets /v1/traces and /v1/metrics."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/custom/t",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:4318/custom/m",
    }
    reporter = OtlpReporter(parse({}, "t.toml", env=env))
    assert (reporter.url, reporter.metrics_url) == (
        "http://traces:4318/custom/t",
        "http://metrics:4318/custom/m",
    )
    base = OtlpReporter(parse({}, "t.toml", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318/"}))
    assert (base.url, base.metrics_url) == ("http://b:4318/v1/traces", "http://b:4318/v1/metrics")
    assert metrics_url("http://b:4318/v1/traces?k=1") == "http://b:4318/v1/metrics?k=1"
    collector = Collector()
    metrics = _reporters(collector, parse({}, "t.toml", env=env))
    metrics.export(_batch([_record(0.01)]))
    assert collector.paths == ["http://metrics:4318/custom/m"]


def test_evicted_transactions_reach_the_metrics() -> None:
    """With a tiny buffer most records are evicted before a harvest; the metrics still
    count every task exactly, and spans delivered + drops said = tasks."""
    collector = Collector()
    spans = OtlpReporter(
        endpoint="http://collector:4318", transport=httpx.MockTransport(collector), timeout=2.0
    )
    recorder = HarvestRecorder(
        Settings(buffer_size=20, harvest_interval=3600.0),
        reporters=[spans.metrics, spans],
        install_process_hooks=False,
    )
    try:
        for i in range(2000):
            recorder.record(_record(0.001, error=i % 10 == 0))
        assert recorder.flush(10.0)
        view = recorder.undelivered()
    finally:
        recorder.shutdown(5.0)
    last = collector.metrics[-1]
    points = _points(last)
    assert points[("jobs:run", "ok")].count + points[("jobs:run", "error")].count == 2000
    assert points[("jobs:run", "error")].count == 200
    delivered, dropped, pending = view["otlp"]
    assert delivered < 2000 and delivered + sum(dropped.values()) + pending == 2000
    assert view["otlp_metrics"][0] == 2000  # every task delivered in the metrics


def test_fork_starts_a_new_series() -> None:
    """A forked child has its own start time and service.instance.id."""
    parent = dict(resource.process_resource())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its series' identity and leave at once
        try:
            child = dict(resource.process_resource())
            text = f"{resource.process_start_ns()} {child['service.instance.id']} {child['process.pid']}"
            os.write(write, text.encode())
        finally:
            os._exit(0)
    os.close(write)
    data = os.read(read, 1000).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    assert int(data[0]) > resource.process_start_ns()
    assert data[1] != parent["service.instance.id"]
    assert int(data[2]) == pid


@pytest.mark.parametrize("explicit", [False, True])
def test_protobuf_encoding_equals_the_json_request(explicit: bool) -> None:
    """http/protobuf: the hand-written wire format decodes into the same message as the
    JSON form (exponential histogram with negative offsets, or explicit buckets with packed
    fixed64 counts and packed double bounds; drops; resource)."""
    from tasktrace.reporters._otlp_protobuf import encode_metrics_request

    series = MetricSeries(explicit=explicit)
    records = [_record(d) for d in (1e-6, 0.3, 0.3, 4.0)] + [_record(0.02, error=True)]
    series.add(aggregate(records), (DropCount("fleet", "otlp:export_failed", 12),))
    request, _ = series.request(resource.process_resource(attributes={"host.name": "h"}))
    expected = ExportMetricsServiceRequest()
    json_format.Parse(json.dumps(request), expected)
    decoded = ExportMetricsServiceRequest.FromString(encode_metrics_request(request))
    assert decoded == expected
    if explicit:
        assert sum(_explicit_points(decoded)[("jobs:run", "ok")].bucket_counts) == 4
    else:
        assert _points(decoded)[("jobs:run", "ok")].positive.offset < 0


def test_protobuf_protocol_from_the_variable() -> None:
    """OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf posts application/x-protobuf."""
    settings = parse({}, "t.toml", env={"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf"})
    seen: List[ExportMetricsServiceRequest] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == "application/x-protobuf"
        seen.append(ExportMetricsServiceRequest.FromString(gzip.decompress(request.content)))
        return httpx.Response(200)

    spans = OtlpReporter(settings, endpoint="http://c:4318", transport=httpx.MockTransport(handler))
    assert spans.metrics.export(_batch([_record(0.01)] * 2)).success
    assert _points(seen[0])[("jobs:run", "ok")].count == 2


def _explicit_points(message: ExportMetricsServiceRequest) -> Dict[Tuple[str, str], Any]:
    """Explicit-bucket histogram points by (task.name, task.outcome)."""
    out = {}
    for rm in message.resource_metrics:
        for metric in rm.scope_metrics[0].metrics:
            if metric.name == "tasktrace.task.duration":
                assert not metric.HasField("exponential_histogram")
                for point in metric.histogram.data_points:
                    attrs = {a.key: a.value.string_value for a in point.attributes}
                    out[(attrs["task.name"], attrs["task.outcome"])] = point
    return out


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "explicit_bucket_histogram"},
        {"TASKTRACE_CONFIG_FILE": ""},  # the config key, below
    ],
)
def test_explicit_bucket_histogram_on_request(env: Dict[str, str]) -> None:
    """The variable's ``explicit_bucket_histogram`` (or ``metrics_histogram = "explicit"``)
    sends a Histogram with EXPLICIT_BOUNDS: every call in the bucket of its duration (none
    near a bound here), count, sum, min and max exact, temporality unchanged."""
    from tasktrace.reporters._otlp_metrics import EXPLICIT_BOUNDS

    data: Dict[str, Any] = {}
    if "TASKTRACE_CONFIG_FILE" in env:
        data = {"reporter": {"metrics_histogram": "explicit"}}
        env = {}
    settings = parse(data, "t.toml", env=env)
    assert settings.reporter.metrics_histogram == "explicit"
    collector = Collector()
    metrics = _reporters(collector, settings)
    durations = [0.0, 0.003, 0.004, 0.2, 0.2, 0.2, 42.0, 7200.0]
    assert metrics.export(_batch([_record(d) for d in durations])).success
    (message,) = collector.metrics
    (metric,) = message.resource_metrics[0].scope_metrics[0].metrics
    assert metric.histogram.aggregation_temporality == 2
    point = _explicit_points(message)[("jobs:run", "ok")]
    assert list(point.explicit_bounds) == list(EXPLICIT_BOUNDS)
    expected = [0] * (len(EXPLICIT_BOUNDS) + 1)
    for d in durations:
        expected[next((i for i, b in enumerate(EXPLICIT_BOUNDS) if d <= b), -1)] += 1
    assert list(point.bucket_counts) == expected
    assert point.count == len(durations) and point.sum == pytest.approx(sum(durations))
    assert (point.min, point.max) == (0.0, 7200.0)


def test_a_bad_histogram_choice_is_a_config_error() -> None:
    """An unknown aggregation names the variable's key and what to use."""
    from tasktrace.config import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        parse({}, "t.toml", env={"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "hdr"})
    text = str(caught.value)
    assert "metrics_histogram" in text or "HISTOGRAM_AGGREGATION" in text, text
    assert "explicit" in text, text


@pytest.mark.parametrize(
    ("data", "env"),
    [({}, {"OTEL_METRICS_EXPORTER": "none"}), ({"reporter": {"metrics": False}}, {})],
)
def test_metrics_can_be_turned_off(data: Dict[str, Any], env: Dict[str, str]) -> None:
    """OTEL_METRICS_EXPORTER=none (or metrics = false): the OTLP reporter brings no metrics
    companion, so the recorder posts spans only."""
    from tasktrace.reporters.registry import create_reporters

    settings = parse(
        {**data, "reporter": {"type": "otlp", **data.get("reporter", {})}}, "t.toml", env=env
    )
    assert settings.reporter.metrics is False
    assert [r.name for r in create_reporters(settings)] == ["otlp"]
    on = parse({"reporter": {"type": "otlp"}}, "t.toml", env={"OTEL_METRICS_EXPORTER": "otlp"})
    assert [r.name for r in create_reporters(on)] == ["otlp_metrics", "otlp"]


def test_an_exporter_tasktrace_lacks_is_a_config_error() -> None:
    """OTEL_METRICS_EXPORTER=prometheus names the variable and what to use instead."""
    from tasktrace.config import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        parse({}, "t.toml", env={"OTEL_METRICS_EXPORTER": "prometheus"})
    text = str(caught.value)
    assert "OTEL_METRICS_EXPORTER" in text and "none" in text, text


def test_a_collector_without_metrics_is_told_how_to_stop_them() -> None:
    """A 404 on /v1/metrics (a traces-only collector) says which variable turns them off."""
    collector = Collector(404)
    metrics = _reporters(collector)
    result = metrics.export(_batch([_record(0.01)]))
    assert not result.success
    assert "HTTP 404" in result.message and "OTEL_METRICS_EXPORTER=none" in result.message


def test_a_refused_export_is_not_said_as_out_of_time(tmp_path: Any) -> None:
    """A collector answering 404 to /v1/metrics (spans 200): the program's exit says the
    metrics were not delivered (export_failed) with the hint, and not that delivery ran
    out of shutdown_timeout."""
    import http.server
    import subprocess
    import sys

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(404 if self.path.endswith("/v1/metrics") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    program = tmp_path / "job.py"
    program.write_text(
        "import tasktrace\n"
        "@tasktrace.background_task()\n"
        "def work(i):\n"
        "    return i\n"
        "for i in range(5):\n"
        "    work(i)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env.update(
        TASKTRACE_REPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
    )
    try:
        run = subprocess.run(
            [sys.executable, "-m", "tasktrace", "run-python", str(program)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0 and run.stdout == "", run.stderr
    assert "OTEL_METRICS_EXPORTER=none" in run.stderr, run.stderr
    assert "5 of 5 transactions" in run.stderr and "otlp_metrics:export_failed: 5" in run.stderr
    assert "did not finish within shutdown_timeout" not in run.stderr, run.stderr
    assert "to otlp " not in run.stderr, run.stderr  # the spans all went
