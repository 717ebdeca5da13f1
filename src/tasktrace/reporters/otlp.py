"""The OTLP reporter: transactions as OpenTelemetry traces, sent as OTLP/HTTP JSON.

Each transaction becomes a root span (named with the transaction's name, kind INTERNAL)
and each of its function traces a child span, grouped in one ``resourceSpans`` entry per
application (``service.name`` = app name). Errors set the span status to ERROR and add an
``exception`` event per recorded error (the encoding is in
:mod:`tasktrace.reporters._otlp_json`). Requests go to ``<endpoint>/v1/traces``, gzipped
unless ``compression = "none"``.

Retries follow the OTLP/HTTP specification: only 429, 502, 503 and 504 responses and
connection errors or timeouts are retried, honouring ``Retry-After`` (seconds or an HTTP
date), with exponential backoff and jitter, all within the export's time budget: the
reporter never sleeps past it. A 200 response with ``partialSuccess.rejectedSpans``
counts those spans as dropped and is not retried; any other error status drops the batch.
Responses are read up to :data:`MAX_RESPONSE_BYTES` only.

``httpx`` is imported when the first export happens (in the harvest thread), and one
``httpx.Client`` is kept per process (a forked child makes its own). Headers are never
logged, and URLs in messages have their credentials and query removed.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import os
import ssl
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from tasktrace import _rng
from tasktrace._version import __version__

# The one URL redaction (re-exported here, where the reporter's messages use it).
from tasktrace.config import ReporterSettings, redact_url
from tasktrace.records import TransactionRecord
from tasktrace.reporters._otlp_json import _encode, build_request
from tasktrace.reporters._otlp_metrics import MetricSeries
from tasktrace.reporters._otlp_protobuf import encode_metrics_request
from tasktrace.reporters.base import Batch, ExportResult
from tasktrace.resource import Resource, process_resource

if TYPE_CHECKING:
    import httpx

    from tasktrace.config import Settings

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_SPANS_PER_REQUEST",
    "RETRYABLE_STATUS",
    "OtlpMetricsReporter",
    "OtlpReporter",
    "build_request",
    "metrics_url",
    "redact_url",
    "traces_url",
]

#: Status codes the OTLP/HTTP specification says to retry.
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
#: At most this many response bytes are read (a collector's reply is small; anything
#: larger is not worth the memory).
MAX_RESPONSE_BYTES = 64 * 1024
#: Transactions per request: large batches are split so no request grows past what
#: collectors commonly accept.
MAX_SPANS_PER_REQUEST = 1000
#: First backoff delay and its cap, seconds.
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0


def traces_url(endpoint: str) -> str:
    """``endpoint`` with ``/v1/traces`` appended to its path, unless it already ends with
    it; a query string (``?token=...``, which some vendors use for keys) is kept after it.
    """
    return _signal_url(endpoint, "/v1/traces")


def metrics_url(endpoint: str) -> str:
    """``endpoint`` (a base URL, or a traces URL ending ``/v1/traces``) with
    ``/v1/metrics`` as its path's end; a query string is kept after it."""
    return _signal_url(endpoint, "/v1/metrics")


def _signal_url(endpoint: str, suffix: str) -> str:
    base = endpoint.strip()
    try:
        parts = urlsplit(base)
    except ValueError:
        parts = None
    if parts is not None and (parts.query or parts.fragment):
        path = _base_path(parts.path.rstrip("/"), suffix)
        return urlunsplit((parts.scheme, parts.netloc, path + suffix, parts.query, ""))
    return _base_path(base.rstrip("/"), suffix) + suffix


def _base_path(path: str, suffix: str) -> str:
    """``path`` without a trailing ``suffix`` (or, for metrics, ``/v1/traces``: an
    endpoint written as the traces URL still finds the metrics one)."""
    for end in (suffix, "/v1/traces"):
        if path.endswith(end):
            return path[: -len(end)]
    return path


def _retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def _rejected(body: bytes) -> Tuple[int, str]:
    """``partialSuccess.rejectedSpans`` and its message from a response body (0 if none)."""
    if not body:
        return 0, ""
    try:
        data = json.loads(body)
        partial = data.get("partialSuccess") or {}
        rejected = int(partial.get("rejectedSpans") or 0)
        message = str(partial.get("errorMessage") or "")
    except (ValueError, TypeError, AttributeError):
        return 0, ""  # not JSON (or a protobuf body): nothing we can read
    from tasktrace._sanitize import clean

    return max(0, rejected), clean(message[:200])


class OtlpReporter:
    """Sends batches to an OTLP/HTTP collector as JSON.

    Args:
        settings: Supplies ``[reporter]`` endpoint, headers, timeout, CA bundle and
            compression; keyword arguments override them.
        transport: An ``httpx.BaseTransport`` to send through (tests:
            ``httpx.MockTransport``).
        client: An ``httpx.Client`` to use as is (it is not closed by ``shutdown``).
        sleep: How to wait between retries (tests inject a recorder of delays); by default
            ``batch.sleep``, which an exit or flush interrupts.
    """

    name = "otlp"

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        endpoint: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        ca_bundle: Optional[str] = None,
        compression: Optional[str] = None,
        transport: Optional[httpx.BaseTransport] = None,
        client: Optional[httpx.Client] = None,
        sleep: Optional[Callable[[float], None]] = None,
    ) -> None:
        # Defaults come from ReporterSettings, the one place they are written.
        reporter = settings.reporter if settings is not None else ReporterSettings()
        # A per-signal endpoint is a full URL, used as given (as the specification says);
        # an explicit ``endpoint`` argument beats both.
        if endpoint is None and reporter.traces_endpoint:
            self.url = reporter.traces_endpoint
        else:
            self.url = traces_url(reporter.endpoint if endpoint is None else endpoint)
        if endpoint is None and reporter.metrics_endpoint:
            self.metrics_url = reporter.metrics_endpoint
        else:
            self.metrics_url = metrics_url(reporter.endpoint if endpoint is None else endpoint)
        _warn_if_unencrypted(self.url)
        self._resource_inputs: Tuple[Optional[str], Optional[str], Mapping[str, str]] = (
            (settings.app_version, settings.environment, settings.resource_attributes)
            if settings is not None
            else (None, None, {})
        )
        #: The companion that sends this process's metrics (see OtlpMetricsReporter),
        #: added to the reporters unless ``reporter.metrics`` is off.
        self._send_metrics = reporter.metrics
        self.metrics = OtlpMetricsReporter(
            self,
            reporter.metrics_temporality,
            reporter.metrics_protocol,
            reporter.metrics_histogram,
        )
        self._headers: Dict[str, str] = dict(reporter.headers if headers is None else headers)
        self._timeout = float(reporter.timeout if timeout is None else timeout)
        self._ca_bundle = reporter.ca_bundle if ca_bundle is None else ca_bundle
        compression = compression or reporter.compression
        self._gzip = compression.lower() != "none"
        self._transport = transport
        self._given_client = client
        self._client: Optional[httpx.Client] = None
        self._client_pid = 0
        self._sleep = sleep
        self._closed = False

    def __repr__(self) -> str:
        return f"<OtlpReporter {redact_url(self.url)}>"

    @property
    def companions(self) -> Tuple[OtlpMetricsReporter, ...]:
        """Reporters the registry adds with this one: the metrics, delivered first (so
        that under an exit deadline the metrics, which count every task, go before the
        spans, which may be dropped); none when ``reporter.metrics`` is off."""
        return (self.metrics,) if self._send_metrics else ()

    # -- the HTTP client ----------------------------------------------------------------

    def _get_client(self) -> httpx.Client:
        if self._given_client is not None:
            return self._given_client
        if self._client is not None and self._client_pid != os.getpid():
            # Inherited through fork: its sockets (and TLS sessions) are the parent's.
            # Dropped, not closed, so nothing is sent on the parent's connections.
            self._client = None
        if self._client is None:
            import httpx

            verify: Any = True
            if self._ca_bundle:
                verify = ssl.create_default_context(cafile=os.path.expanduser(self._ca_bundle))
            self._client = httpx.Client(
                transport=self._transport,
                verify=verify,
                trust_env=True,
                timeout=self._timeout,
                headers={"User-Agent": f"tasktrace/{__version__}"},
            )
            self._client_pid = os.getpid()
        return self._client

    # -- export -------------------------------------------------------------------------

    def export(self, batch: Batch) -> ExportResult:
        """Send ``batch`` (split into requests of :data:`MAX_SPANS_PER_REQUEST`)."""
        records = batch.records
        if not records:
            return ExportResult(True)
        if self._closed:
            return ExportResult(False, dropped=len(records), message="reporter shut down")
        end = time.monotonic() + self._timeout
        exported = dropped = 0
        messages: List[str] = []
        reasons: List[str] = []
        retryable = False
        success = True
        for offset in range(0, len(records), MAX_SPANS_PER_REQUEST):
            chunk = records[offset : offset + MAX_SPANS_PER_REQUEST]
            result = self._send(chunk, batch, end)
            exported += result.exported
            dropped += result.dropped
            retryable = retryable or result.retryable
            success = success and result.success
            if result.message and result.message not in messages:
                messages.append(result.message)
            if result.dropped and result.reason not in reasons:
                reasons.append(result.reason)
        # success means every request was accepted; a partial success still reports
        # the spans the collector rejected in ``dropped``.
        return ExportResult(
            success=success,
            exported=exported,
            dropped=dropped,
            retryable=retryable,
            message="; ".join(messages),
            reason=reasons[0] if len(reasons) == 1 else "",
        )

    def _send(self, records: Sequence[TransactionRecord], batch: Batch, end: float) -> ExportResult:
        """One request of spans, retried as the specification allows, until ``end`` or the
        batch's deadline (which the recorder may bring forward), whichever comes first."""
        pid = batch.pid or None
        span_count = sum(1 + len(r.segments) for r in records)
        try:
            body = _encode(build_request(records, pid=pid, resource=self.resource()))
        except (TypeError, ValueError) as exc:
            return ExportResult(False, dropped=len(records), message=f"cannot encode: {exc}")
        answer = self._deliver(self.url, body, batch, end)
        if not answer.ok:
            return ExportResult(
                False,
                dropped=len(records),
                retryable=answer.retryable,
                message=answer.message,
                reason=answer.reason,
            )
        rejected, why = _rejected(answer.reply)
        if rejected:
            # Proportionally, since rejections are per span and a dropped transaction is
            # the unit counted; at least one.
            lost = min(len(records), max(1, rejected * len(records) // span_count))
            return ExportResult(
                True,
                exported=len(records) - lost,
                dropped=lost,
                message=(
                    f"collector at {redact_url(self.url)} rejected {rejected} spans"
                    + (f": {why}" if why else "")
                ),
            )
        return ExportResult(True, exported=len(records))

    def resource(self) -> Resource:
        """This process's resource attributes (after ``service.name``), computed once."""
        app_version, environment, attributes = self._resource_inputs
        return process_resource(
            app_version=app_version, environment=environment, attributes=attributes
        )

    def _deliver(
        self,
        url: str,
        body: bytes,
        batch: Batch,
        end: float,
        content_type: str = "application/json",
    ) -> _Answer:
        """POST ``body`` to ``url``, retried as the specification allows, until ``end`` or
        the batch's deadline, whichever comes first."""
        headers = dict(self._headers)
        headers["Content-Type"] = content_type
        if self._gzip:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        shown = redact_url(url)
        attempt = 0
        # After a request whose answer did not come in time, the collector may have taken
        # the data after all: what is given up on then is said as a "timeout".
        unanswered = ""
        while True:
            left = batch.time_left(end - time.monotonic())
            if left <= 0:
                return _Answer(False, b"", f"POST {shown}: no time left to retry", True, unanswered)
            retry_after: Optional[float] = None
            try:
                status, reply, retry_header = self._post(url, body, headers, left)
            except _Retryable as exc:
                problem = f"POST {shown}: {exc}"
                unanswered = "timeout" if isinstance(exc, _Timeout) else ""
            except _Fatal as exc:
                return _Answer(False, b"", f"POST {shown}: {exc}", False, "")
            else:
                if 200 <= status < 300:
                    return _Answer(True, reply, "", False, "")
                if status not in RETRYABLE_STATUS:
                    return _Answer(
                        False, reply, f"POST {shown}: HTTP {status}{_snippet(reply)}", False, ""
                    )
                problem = f"POST {shown}: HTTP {status}"
                unanswered = ""
                retry_after = _retry_after(retry_header, time.time())
            # Retryable: wait as told (Retry-After) or back off, but never past the deadline.
            if retry_after is None:
                retry_after = min(MAX_BACKOFF, INITIAL_BACKOFF * (2**attempt))
                retry_after *= 0.5 + _rng.random()  # jitter: spread retries of many processes
            attempt += 1
            if retry_after >= batch.time_left(end - time.monotonic()):
                return _Answer(
                    False,
                    b"",
                    f"{problem} (gave up after {attempt} attempts within the timeout)",
                    True,
                    unanswered,
                )
            if self._sleep is not None:
                self._sleep(retry_after)
            else:
                batch.sleep(retry_after)

    def _post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float
    ) -> Tuple[int, bytes, Optional[str]]:
        """POST once; returns status, at most MAX_RESPONSE_BYTES of body, Retry-After."""
        import httpx

        _silence_own_requests()
        _exporting.active = True
        try:
            client = self._get_client()
            with client.stream(
                "POST", url, content=body, headers=headers, timeout=timeout
            ) as response:
                if response.is_stream_consumed:
                    # Already in memory (a transport that buffers, e.g. MockTransport).
                    reply = response.content[:MAX_RESPONSE_BYTES]
                else:
                    # Raw bytes, bounded, then bounded decompression: a huge body or a
                    # compression bomb costs at most MAX_RESPONSE_BYTES twice.
                    raw = bytearray()
                    for chunk in response.iter_raw():
                        raw += chunk
                        if len(raw) >= MAX_RESPONSE_BYTES:
                            break
                    reply = _decode(bytes(raw[:MAX_RESPONSE_BYTES]), response.headers)
                return response.status_code, reply, response.headers.get("Retry-After")
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:  # sent, or partly sent
            raise _Timeout(_describe(exc)) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            failure = _certificate_failure(exc)
            if failure is not None:  # will not heal by retrying: fail at once, say why
                raise _Fatal(
                    f"certificate verify failed ({failure}): the endpoint's TLS certificate "
                    "is not trusted; set [reporter] ca_bundle to the CA certificate that "
                    "signed it (a PEM file), or fix the server's certificate"
                ) from None
            raise _Retryable(_describe(exc)) from None
        except httpx.HTTPError as exc:
            raise _Fatal(_describe(exc)) from None
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise _Fatal(_describe(exc)) from None
        finally:
            _exporting.active = False

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        """Nothing is held between exports."""
        return True

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """Close this process's HTTP client; later exports are dropped."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._client_pid == os.getpid():
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing the client at shutdown: nothing left to do about a failure
                pass


_plaintext_warned = False


def _warn_if_unencrypted(url: str) -> None:
    """Warn (once per process) when spans would go over plain http:// to another host.

    Loopback (``127.0.0.0/8``, ``::1``, ``localhost``) is the usual local collector or
    agent and is not warned about; neither is ``https://``.
    """
    global _plaintext_warned
    if _plaintext_warned:
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return  # the request will fail and say why
    if parts.scheme.lower() != "http" or _is_loopback(host):
        return
    _plaintext_warned = True
    from tasktrace._logging import get_logger

    get_logger("tasktrace.otlp").warning(
        "tasktrace: otlp: the endpoint %s is plain http:// to another host: spans and "
        "headers (API keys) go unencrypted over the network; use https:// unless the "
        "network is trusted",
        redact_url(url),
    )


def _is_loopback(host: Optional[str]) -> bool:
    if not host:
        return True  # no host to send to: nothing leaves this machine
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress

    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False  # a name: it may resolve anywhere
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_loopback or address.is_unspecified


#: Set while this thread sends an export (see :func:`_silence_own_requests`).
_exporting = threading.local()
#: The loggers of httpx and httpcore (1.x) that log each request.
_HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_silenced = False


def _not_our_request(record: object) -> bool:
    return not getattr(_exporting, "active", False)


def _silence_own_requests() -> None:
    """Keep our own requests out of httpx's and httpcore's logs, once per process.

    httpx logs every request's full URL at INFO -- with the endpoint's password and
    ``?token=`` -- to the root logger, which a program that configures logging at INFO
    or DEBUG prints. A filter on those loggers drops the records made while this thread
    exports (the exporter's own HTTP calls are never traced, nor logged); the program's
    own httpx requests are logged as before.
    """
    global _silenced
    if _silenced:
        return
    _silenced = True
    import logging

    for name in _HTTP_LOGGERS:
        logging.getLogger(name).addFilter(_not_our_request)


class _Answer(NamedTuple):
    """What became of one request and its retries."""

    #: A 2xx answer came.
    ok: bool
    #: The answer's body (at most MAX_RESPONSE_BYTES).
    reply: bytes
    #: What went wrong, for the log (empty when ok).
    message: str
    #: The failure was temporary (connection, timeout, 429/502/503/504).
    retryable: bool
    #: ``"timeout"`` when the last request went unanswered (the collector may have taken
    #: it), else empty.
    reason: str


#: Said when the metrics URL is not found: how to stop posting metrics there.
_NO_METRICS_HINT = (
    "if this collector takes no metrics, set OTEL_METRICS_EXPORTER=none "
    "(or metrics = false under [reporter])"
)


class OtlpMetricsReporter:
    """The metrics of every task (:mod:`tasktrace.reporters._otlp_metrics`), posted to
    ``<endpoint>/v1/metrics`` through its :class:`OtlpReporter`'s client, with the same
    retries, timeout and deadline as the spans but apart from them: a reporter of its own
    in the recorder's ledger, so spans may be dropped under load while the metrics, which
    count every transaction (``stores_metrics``), are kept until a collector takes them.

    A failed export keeps its values: a cumulative series carries them in its next totals,
    a delta one merges them into the next delta; what is still unsent at shutdown is said
    as dropped (``otlp_metrics:<reason>``). A delta export the collector refuses for good
    (a non-retryable status) is dropped at once.

    Args:
        spans: The OTLP reporter whose client, headers and timeout it uses.
        temporality: ``"cumulative"`` or ``"delta"``.
        protocol: ``"http/json"`` (the default) or ``"http/protobuf"``.
        histogram: ``"exponential"`` (the default) or ``"explicit"``.
    """

    name = "otlp_metrics"
    stores_metrics = True

    def __init__(
        self,
        spans: OtlpReporter,
        temporality: str = "cumulative",
        protocol: str = "http/json",
        histogram: str = "exponential",
    ) -> None:
        self._spans = spans
        self._protobuf = protocol == "http/protobuf"
        self.url = spans.metrics_url
        self.series = MetricSeries(temporality, explicit=histogram == "explicit")
        self._closed = False
        self._reason = ""
        #: Whether the last failure was temporary (a dead or busy collector), as opposed
        #: to a refusal (HTTP 404 from a collector that takes no metrics).
        self._temporary = True

    def __repr__(self) -> str:
        return f"<OtlpMetricsReporter {redact_url(self.url)}>"

    def export(self, batch: Batch) -> ExportResult:
        """Add the batch's aggregates and drops to the series and send them."""
        self.series.add(batch.metrics, batch.drops)
        return self._push(batch)

    def _push(self, batch: Batch) -> ExportResult:
        series = self.series
        if not series.unsent and not series.has_data():
            return ExportResult(True)
        if self._closed:
            return self._give_up("reporter shut down", "shutdown")
        end = time.monotonic() + self._spans._timeout
        request, now = series.request(self._spans.resource())
        try:
            if self._protobuf:
                body, content_type = encode_metrics_request(request), "application/x-protobuf"
            else:
                body, content_type = _encode(request), "application/json"
        except (TypeError, ValueError, KeyError) as exc:
            return self._give_up(f"cannot encode: {exc}", "")
        answer = self._spans._deliver(self.url, body, batch, end, content_type)
        if answer.ok:
            exported = series.unsent
            series.accepted(now)
            return ExportResult(True, exported=exported)
        self._reason = answer.reason
        self._temporary = answer.retryable
        if " HTTP 404" in answer.message or " HTTP 405" in answer.message:
            # The usual answer of a collector that takes traces only (Jaeger's).
            answer = answer._replace(message=f"{answer.message}; {_NO_METRICS_HINT}")
        if answer.retryable or not series.delta:
            # Kept: the next export carries these values (a cumulative series even after
            # a refusal, since its next totals include them anyway).
            return ExportResult(
                False,
                kept=series.unsent,
                retryable=True,
                message=answer.message,
                reason=answer.reason,
            )
        return ExportResult(
            False, dropped=series.discard(now), message=answer.message, reason=answer.reason
        )

    def _give_up(self, message: str, reason: str) -> ExportResult:
        lost = self.series.unsent
        self.series.unsent = 0
        return ExportResult(False, dropped=lost, message=message, reason=reason)

    def force_flush(self, timeout: Optional[float] = None) -> ExportResult:
        """Send what is still unsent (within ``timeout`` seconds)."""
        if not self.series.unsent:
            return ExportResult(True)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._push(Batch(records=(), deadline=deadline))

    def shutdown(self, timeout: Optional[float] = None) -> ExportResult:
        """Stop; what was never accepted is dropped, under the last failure's reason."""
        self._closed = True
        lost = self.series.unsent
        self.series.unsent = 0
        return ExportResult(
            not lost,
            dropped=lost,
            # Out of time only if the collector could still have taken them.
            retryable=bool(lost) and self._temporary,
            message="metrics not delivered before shutdown" if lost else "",
            reason=self._reason or ("export_failed" if lost else ""),
        )


class _Retryable(Exception):
    """A connection error or timeout: retry if time allows."""


class _Timeout(_Retryable):
    """No answer in time (the collector may still have taken the request)."""


class _Fatal(Exception):
    """A request that cannot succeed as configured (bad URL, TLS setup...)."""


def _certificate_failure(exc: BaseException) -> Optional[str]:
    """The reason if ``exc`` (or what caused it) is a TLS certificate verification error."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 10:
        if isinstance(current, ssl.SSLCertVerificationError):
            reason = getattr(current, "verify_message", None) or current.reason or ""
            return " ".join(str(reason).split()) or "unknown reason"
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _describe(exc: BaseException) -> str:
    """The class and message of ``exc``, with URLs in it redacted."""
    text = str(exc)
    words = [redact_url(word) if "://" in word else word for word in text.split()]
    return f"{type(exc).__name__}: {' '.join(words)}" if words else type(exc).__name__


def _decode(raw: bytes, headers: Mapping[str, str]) -> bytes:
    """Undo gzip/deflate content encoding, producing at most MAX_RESPONSE_BYTES."""
    encoding = headers.get("Content-Encoding", "").lower()
    if encoding not in ("gzip", "deflate"):
        return raw
    try:
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        return zlib.decompressobj(wbits).decompress(raw, MAX_RESPONSE_BYTES)
    except zlib.error:
        return b""


def _snippet(reply: bytes) -> str:
    """The start of an error response, one line, for the log.

    The body is the collector's (or whatever answers at the endpoint): its control
    characters and escape sequences are shown as escapes, never passed to the terminal.
    """
    from tasktrace._sanitize import clean

    text = clean(" ".join(reply[:200].decode("utf-8", "replace").split()))
    return f": {text}" if text else ""


def _reset_for_tests() -> None:
    """Warn again about a plain-http endpoint.

    (The filter on httpx's loggers stays: it is installed once per process, and passes
    every record not made by an export.)
    """
    global _plaintext_warned
    _plaintext_warned = False
