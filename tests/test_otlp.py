"""Unit tests for tasktrace.reporters.otlp with httpx.MockTransport (no sockets).

The same exporter against a real HTTP server on 127.0.0.1, and against a real collector
(rotel), is tested in tests/integration/test_otlp_server.py.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from typing import Any, Callable, Dict, List

import httpx
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tasktrace.records import ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.reporters.base import Batch
from tasktrace.reporters.otlp import (
    MAX_RESPONSE_BYTES,
    OtlpReporter,
    build_request,
    redact_url,
    traces_url,
)


def _record(app: str = "billing", error: bool = False) -> TransactionRecord:
    errors = (
        (ErrorRecord("builtins:ValueError", "bad card", "Traceback: ...", 1700000000.25),)
        if error
        else ()
    )
    return TransactionRecord(
        app=app,
        name="jobs:Invoices.send",
        group="Function",
        background=True,
        start=1700000000.0,
        duration=0.5,
        exclusive=0.2,
        cpu_time=0.125,
        pid=4242,
        thread_id=77,
        errors=errors,
        attributes={"tenant": "acme", "count": 3, "ratio": 0.5, "ok": True, "big": 2**70},
        segments=(
            SegmentRecord("db:query", "Function", 0.1, 0.05, 1),  # child of the next one
            SegmentRecord("jobs:step", "Function", 0.05, 0.2, -1),
        ),
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
    )


def _parse(body: bytes) -> ExportTraceServiceRequest:
    """Strict protobuf JSON parse: unknown fields fail."""
    message = ExportTraceServiceRequest()
    json_format.Parse(body, message)
    return message


class Collector:
    """A MockTransport handler that answers from a script and keeps every request."""

    def __init__(self, *responses: Callable[[httpx.Request], httpx.Response]) -> None:
        self.responses = list(responses)
        self.requests: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.responses) > 1:
            return self.responses.pop(0)(request)
        return self.responses[0](request)

    def bodies(self) -> List[Dict[str, Any]]:
        out = []
        for request in self.requests:
            raw = request.content
            if request.headers.get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            out.append(json.loads(raw))
        return out


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={})


def status(code: int, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, headers=headers, text="nope")


def _reporter(collector: Collector, sleeps: List[float], **kwargs: Any) -> OtlpReporter:
    options: Dict[str, Any] = {"endpoint": "http://collector:4318", "timeout": 5.0}
    options.update(kwargs)
    return OtlpReporter(transport=httpx.MockTransport(collector), sleep=sleeps.append, **options)


def test_traces_url() -> None:
    """/v1/traces is appended once."""
    assert traces_url("http://h:4318") == "http://h:4318/v1/traces"
    assert traces_url("http://h:4318/") == "http://h:4318/v1/traces"
    assert traces_url("http://h/otlp/v1/traces") == "http://h/otlp/v1/traces"


def test_redact_url() -> None:
    """User info and query strings are removed from URLs used in messages."""
    assert redact_url("https://user:secret@h:1/v1/traces?key=abc") == "https://***@h:1/v1/traces"


def test_request_body_is_valid_otlp() -> None:
    """The body parses strictly as ExportTraceServiceRequest and carries what SPEC 5 says."""
    body = json.dumps(build_request([_record(error=True)], host="box")).encode()
    message = _parse(body)
    (resource_spans,) = message.resource_spans
    resource = {a.key: a.value for a in resource_spans.resource.attributes}
    assert resource["service.name"].string_value == "billing"
    assert resource["process.pid"].int_value == 4242
    assert resource["telemetry.sdk.name"].string_value == "tasktrace"
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "tasktrace"
    root, child, step = scope_spans.spans
    assert root.name == "jobs:Invoices.send" and root.kind == 1
    assert root.end_time_unix_nano - root.start_time_unix_nano == 500_000_000
    assert root.status.code == 2 and "bad card" in root.status.message
    (event,) = root.events
    assert event.name == "exception"
    assert {a.key for a in event.attributes} == {
        "exception.type",
        "exception.message",
        "exception.stacktrace",
    }
    attributes = {a.key: a.value for a in root.attributes}
    assert attributes["code.namespace"].string_value == "jobs"
    assert attributes["code.function"].string_value == "Invoices.send"
    assert attributes["count"].int_value == 3
    assert attributes["ratio"].double_value == 0.5
    assert attributes["ok"].bool_value is True
    assert attributes["big"].string_value == str(2**70)
    assert attributes["thread.id"].int_value == 77
    # Ids are hex in OTLP JSON; parent links follow the segment tree.
    raw = json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert raw[0]["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert raw[0]["spanId"] == "b7ad6b7169203331"
    assert raw[2]["parentSpanId"] == raw[0]["spanId"]
    assert raw[1]["parentSpanId"] == raw[2]["spanId"]
    assert isinstance(raw[0]["startTimeUnixNano"], str)
    assert child.name == "db:query" and step.name == "jobs:step"


def test_resource_spans_grouped_by_app() -> None:
    """One resourceSpans entry per app."""
    request = build_request([_record("a"), _record("b"), _record("a")])
    names = [
        rs["resource"]["attributes"][0]["value"]["stringValue"] for rs in request["resourceSpans"]
    ]
    assert names == ["a", "b"]


def test_post_is_gzipped_json_with_headers() -> None:
    """The POST goes to /v1/traces, gzip-encoded JSON, with the configured headers."""
    collector = Collector(ok)
    sleeps: List[float] = []
    reporter = _reporter(collector, sleeps, headers={"api-key": "s3cret"})
    result = reporter.export(Batch((_record(),)))
    assert result.success and result.exported == 1
    (request,) = collector.requests
    assert request.url == "http://collector:4318/v1/traces"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["api-key"] == "s3cret"
    _parse(gzip.decompress(request.content))


def test_no_compression() -> None:
    """compression='none' sends plain JSON."""
    collector = Collector(ok)
    _reporter(collector, [], compression="none").export(Batch((_record(),)))
    assert "content-encoding" not in collector.requests[0].headers
    _parse(collector.requests[0].content)


def test_retry_on_503_then_success() -> None:
    """503 is retried with backoff; the second attempt succeeds."""
    collector = Collector(status(503), ok)
    sleeps: List[float] = []
    result = _reporter(collector, sleeps).export(Batch((_record(),)))
    assert result.success and len(collector.requests) == 2 and len(sleeps) == 1
    assert 0.2 <= sleeps[0] <= 1.0


def test_retry_after_seconds_is_honoured() -> None:
    """429 with Retry-After: 2 waits exactly 2 seconds before retrying."""
    collector = Collector(status(429, **{"Retry-After": "2"}), ok)
    sleeps: List[float] = []
    assert _reporter(collector, sleeps).export(Batch((_record(),))).success
    assert sleeps == [2.0]


def test_retry_after_http_date() -> None:
    """Retry-After as an HTTP date is turned into seconds."""
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3))
    collector = Collector(status(503, **{"Retry-After": when}), ok)
    sleeps: List[float] = []
    assert _reporter(collector, sleeps).export(Batch((_record(),))).success
    assert 1.0 <= sleeps[0] <= 3.5


def test_retry_after_beyond_deadline_gives_up_without_sleeping() -> None:
    """A Retry-After past the export deadline is not slept: the batch is dropped now."""
    collector = Collector(status(503, **{"Retry-After": "60"}))
    sleeps: List[float] = []
    result = _reporter(collector, sleeps, timeout=1.0).export(Batch((_record(),)))
    assert not result.success and result.retryable and result.dropped == 1
    assert sleeps == [] and len(collector.requests) == 1


def test_batch_deadline_caps_retries() -> None:
    """Retries stop at the batch deadline even with a long reporter timeout."""
    collector = Collector(status(503))
    reporter = OtlpReporter(
        endpoint="http://collector:4318", timeout=30.0, transport=httpx.MockTransport(collector)
    )
    started = time.monotonic()
    result = reporter.export(Batch((_record(),), deadline=time.monotonic() + 1.0))
    assert not result.success
    # The first backoff (at most 0.75 s) fits before the deadline, so it is slept.
    assert 0.25 <= time.monotonic() - started < 1.5
    assert len(collector.requests) >= 2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 413, 500])
def test_non_retryable_status_drops(code: int) -> None:
    """Statuses the spec does not call retryable are dropped after one attempt."""
    collector = Collector(status(code))
    sleeps: List[float] = []
    result = _reporter(collector, sleeps).export(Batch((_record(), _record())))
    assert not result.success and not result.retryable and result.dropped == 2
    assert f"HTTP {code}" in result.message and len(collector.requests) == 1


def test_partial_success_counts_dropped_and_does_not_retry() -> None:
    """200 with partialSuccess.rejectedSpans counts drops and is not retried."""

    def partial(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"partialSuccess": {"rejectedSpans": "3", "errorMessage": "too old"}}
        )

    collector = Collector(partial)
    records = tuple(_record() for _ in range(3))  # 9 spans
    result = _reporter(collector, []).export(Batch(records))
    assert result.success and result.dropped == 1 and result.exported == 2
    assert "rejected 3 spans: too old" in result.message
    assert len(collector.requests) == 1


def test_connection_errors_retry_until_deadline() -> None:
    """Connection errors are retried with backoff and give up by the deadline."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    collector = Collector(refuse)
    reporter = OtlpReporter(
        endpoint="http://collector:4318", timeout=1.0, transport=httpx.MockTransport(collector)
    )
    started = time.monotonic()
    result = reporter.export(Batch((_record(),)))
    # At least one backoff (0.25 s or more) was slept between the attempts.
    assert 0.25 <= time.monotonic() - started < 1.5
    assert not result.success and result.retryable and result.dropped == 1
    assert len(collector.requests) >= 2


def test_huge_and_non_json_responses_are_harmless() -> None:
    """A huge or non-JSON 200 body is read only in part and counts as success."""
    big = b"x" * (MAX_RESPONSE_BYTES * 20)
    collector = Collector(lambda request: httpx.Response(200, content=big))
    assert _reporter(collector, []).export(Batch((_record(),))).success
    collector = Collector(lambda request: httpx.Response(200, text="<html>ok</html>"))
    assert _reporter(collector, []).export(Batch((_record(),))).success


def test_messages_never_leak_credentials() -> None:
    """Failure messages carry neither header values nor URL credentials."""
    collector = Collector(status(401))
    reporter = _reporter(
        collector, [], endpoint="https://bob:hunter2@collector:4318", headers={"api-key": "s3cret"}
    )
    message = reporter.export(Batch((_record(),))).message
    assert "hunter2" not in message and "s3cret" not in message and "bob" not in message
    assert "***@collector" in message


def test_large_batches_are_split() -> None:
    """A batch over MAX_SPANS_PER_REQUEST transactions goes out in several requests."""
    collector = Collector(ok)
    records = tuple(_record() for _ in range(2500))
    result = _reporter(collector, []).export(Batch(records))
    assert result.exported == 2500 and len(collector.requests) == 3


def test_client_is_recreated_after_fork() -> None:
    """A client made in another process is replaced, not reused."""
    reporter = OtlpReporter(endpoint="http://c:4318", transport=httpx.MockTransport(ok))
    first = reporter._get_client()
    assert reporter._get_client() is first
    reporter._client_pid = os.getpid() + 1  # as if inherited through fork
    assert reporter._get_client() is not first
    reporter.shutdown()


def test_export_after_shutdown_drops() -> None:
    """After shutdown the reporter refuses batches."""
    reporter = OtlpReporter(endpoint="http://c:4318", transport=httpx.MockTransport(ok))
    reporter.shutdown()
    assert reporter.export(Batch((_record(),))).dropped == 1


def test_cpu_time_attribute_only_when_measured() -> None:
    """cpu_time None (the default) sends no tasktrace.cpu_time attribute; a value is a double."""

    def root_attributes(record: TransactionRecord) -> Dict[str, Any]:
        body = json.dumps(build_request([record], host="box")).encode()
        _parse(body)  # still a valid ExportTraceServiceRequest
        span = json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        return {a["key"]: a["value"] for a in span["attributes"]}

    assert "tasktrace.cpu_time" not in root_attributes(_record()._replace(cpu_time=None))
    measured = root_attributes(_record()._replace(cpu_time=0.25))
    assert measured["tasktrace.cpu_time"] == {"doubleValue": 0.25}


def test_unanswered_requests_are_given_up_as_timeout() -> None:
    """A request with no answer in time may have reached the collector: what is given up
    on says "timeout"; one refused outright says the default reason."""

    def silent(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    for handler, reason in ((silent, "timeout"), (refuse, "")):
        reporter = OtlpReporter(
            endpoint="http://collector:4318",
            timeout=0.3,
            transport=httpx.MockTransport(Collector(handler)),
        )
        result = reporter.export(Batch((_record(), _record())))
        assert (result.success, result.dropped, result.reason) == (False, 2, reason)
