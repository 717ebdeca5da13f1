"""tasktrace.integrations: the ``[integrations]`` settings, trace context in job messages,
Celery's signals in process (eager tasks: Celery runs them through the same tracer and
signals as a worker), targets naming task objects, and the OTLP form of jobs.

The real workers and brokers are in ``tests/integration/test_celery_integration.py``,
``test_rq_integration.py`` and ``test_rabbitmq.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, List

import pytest

import tasktrace
from tasktrace import agent, hooks
from tasktrace._state import STATE
from tasktrace.admin import main
from tasktrace.config import ConfigurationError, Settings, parse
from tasktrace.integrations import _context, _jobs
from tasktrace.integrations._targets import task_object, unsupported_reason
from tasktrace.records import TransactionRecord
from tasktrace.reporters._otlp_json import _spans

# -- settings ---------------------------------------------------------------------------


def test_integrations_default_on_and_parent() -> None:
    """Every integration is on by default and propagate is "parent"."""
    settings = parse({}, "t.toml")
    assert tuple(settings.integrations) == (True, True, True, True, True, "parent")


def test_integrations_table_is_parsed() -> None:
    """``[integrations]`` switches one off and sets propagate; sources name the file."""
    settings = parse({"integrations": {"rq": False, "propagate": "link"}}, "t.toml")
    assert settings.integrations.rq is False and settings.integrations.celery is True
    assert settings.integrations.propagate == "link"
    assert settings.sources["integrations.propagate"] == "t.toml"


def test_bad_integration_values_name_key_value_and_fix() -> None:
    """A wrong type, a bad mode and a misspelt key are errors saying how to fix them."""
    with pytest.raises(ConfigurationError) as info:
        parse({"integrations": {"celery": "no", "propagate": "parnt", "dramatic": True}}, "t.toml")
    text = str(info.value)
    assert "integrations.celery: expected a boolean, got a string ('no')" in text
    assert "'parnt' is not one of parent, link, none; did you mean 'parent'?" in text
    assert "unknown key 'dramatic' in [integrations]; did you mean 'dramatiq'?" in text


def test_integrations_must_be_a_table() -> None:
    """``integrations = true`` is an error that says to write a section."""
    with pytest.raises(ConfigurationError, match=r"integrations: expected a table"):
        parse({"integrations": True}, "t.toml")


def test_show_config_lists_the_integrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """show-config has a row per integration setting with its source."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasktrace.toml").write_text("[integrations]\ncelery = false\n")
    assert main(["show-config"]) == 0
    out = capsys.readouterr().out
    assert "integrations.celery" in out and "false" in out
    assert "integrations.propagate" in out and '"parent"' in out


# -- trace context ----------------------------------------------------------------------

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7


def test_traceparent_round_trip() -> None:
    """A header tasktrace writes reads back as the same ids."""
    header = _context.format_traceparent(TRACE, SPAN)
    assert header == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert _context.read_context(header, "vendor=x") == (TRACE, SPAN, "vendor=x")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        42,
        ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
        "00-" + "a" * 10_000,
        b"\xff\xfe",
    ],
)
def test_malformed_traceparent_is_no_context(header: Any) -> None:
    """Anything but a valid header (type, length, case, zero ids, version ff) is none."""
    assert _context.read_context(header, "vendor=x") is None


def test_hostile_header_objects_are_no_context() -> None:
    """A header object whose methods raise is treated as absent, never an error."""

    class Hostile(str):
        def strip(self, *args: Any) -> str:
            raise RuntimeError("boom")

    assert _context.read_context(Hostile("00-" + "a" * 32 + "-" + "b" * 16 + "-01"), None) is None


@pytest.mark.parametrize("state", ["a=\x1b[31m", "x" * 600, 12, "é=1"])
def test_bad_tracestate_is_dropped_not_the_parent(state: Any) -> None:
    """A tracestate with control characters, too long or not text is left out."""
    header = _context.format_traceparent(TRACE, SPAN)
    assert _context.read_context(header, state) == (TRACE, SPAN, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000.5, 1700000000.5),
        ("1700000000.5", 1700000000.5),
        (True, None),
        ("x", None),
        (-1, None),
        (float("nan"), None),
        ([], None),
        (None, None),
    ],
)
def test_enqueue_timestamps_are_read_defensively(value: Any, expected: Any) -> None:
    """Only a plausible epoch time counts as the enqueue time."""
    assert _context.parse_timestamp(value) == expected


# -- the shared job machinery -------------------------------------------------------------


def test_a_job_continues_the_producers_trace(records: List[TransactionRecord]) -> None:
    """Enqueueing inside a transaction carries its trace; the job's transaction has it as
    parent, and the producer records an ``enqueue`` function trace."""
    carrier: dict = {}
    with tasktrace.BackgroundTask(name="producer"):
        _jobs.start_enqueue("Celery", "tasks.add", carrier)
        _jobs.end_enqueue()
    context = _context.read_context(carrier["traceparent"], carrier.get("tracestate"))
    scope = _jobs.start_job(
        "Celery",
        "tasks.add",
        job_id="j1",
        queue="q",
        retries=0,
        enqueued_at=carrier[_context.ENQUEUED_AT],
        context=context,
    )
    _jobs.end_job(scope)
    producer, job = records
    assert [s.name for s in producer.segments] == ["enqueue tasks.add"]
    assert producer.segments[0].group == "Celery"
    assert job.trace_id == producer.trace_id and job.parent_span_id == producer.span_id
    assert (job.name, job.group) == ("tasks.add", "Celery")
    attributes = dict(job.attributes)
    assert attributes.pop("job.queue_wait_ms") >= 0
    assert attributes == {
        "job.system": "Celery",
        "job.id": "j1",
        "job.queue": "q",
        "job.retries": 0,
        "job.outcome": "ok",
    }


def test_a_job_passes_its_tracestate_on(records: List[TransactionRecord]) -> None:
    """A job continued with a tracestate gives it to the jobs it enqueues."""
    context = _context.TraceContext(TRACE, SPAN, "vendor=1")
    scope = _jobs.start_job("RQ", "outer", context=context)
    carrier: dict = {}
    _jobs.start_enqueue("RQ", "inner", carrier)
    _jobs.end_enqueue()
    _jobs.end_job(scope)
    assert carrier["tracestate"] == "vendor=1"
    assert carrier["traceparent"] == _context.format_traceparent(TRACE, records[0].span_id)


def test_enqueue_outside_a_transaction_carries_only_the_time() -> None:
    """No transaction, no trace to carry: only the enqueue time goes in."""
    carrier: dict = {}
    _jobs.start_enqueue("Celery", "tasks.add", carrier)
    _jobs.end_enqueue()
    assert list(carrier) == [_context.ENQUEUED_AT]


@pytest.mark.parametrize("mode", ["link", "none"])
def test_propagate_link_and_none(records: List[TransactionRecord], mode: str) -> None:
    """With propagate "link" the job has its own trace and a link; with "none", nothing."""
    STATE.apply_settings(parse({"integrations": {"propagate": mode}}, "t.toml"))
    carrier: dict = {}
    with tasktrace.BackgroundTask(name="producer"):
        _jobs.start_enqueue("Celery", "t", carrier)
        _jobs.end_enqueue()
    assert ("traceparent" in carrier) is (mode == "link")
    context = _context.TraceContext(TRACE, SPAN)
    _jobs.end_job(_jobs.start_job("Celery", "t", context=context))
    job = records[-1]
    assert job.trace_id != TRACE and job.parent_span_id is None
    link = (job.attributes.get(_jobs.LINK_TRACE_ID), job.attributes.get(_jobs.LINK_SPAN_ID))
    assert link == ((f"{TRACE:032x}", f"{SPAN:016x}") if mode == "link" else (None, None))


def test_a_configured_task_run_by_a_job_names_it(records: List[TransactionRecord]) -> None:
    """The first task target a job runs gives the job's transaction its name and group
    (the target overrides the job system's defaults) and is no segment of its own: that
    call is the job. The job's attributes stay."""

    @tasktrace.background_task(name="resize", group="Images")
    def resize() -> None:
        pass

    scope = _jobs.start_job("RQ", "jobs.resize", job_id="1")
    resize()
    _jobs.end_job(scope)
    (job,) = records
    assert (job.name, job.group) == ("resize", "Images")
    assert job.attributes["job.system"] == "RQ"
    assert job.segments == ()


# -- Celery, in process -------------------------------------------------------------------

celery = pytest.importorskip("celery", reason="celery is not installed (it is in the test extra)")


@pytest.fixture
def app() -> Iterator[Any]:
    """An eager Celery app (tasks run in the caller, through Celery's tracer and signals),
    with tasktrace's Celery integration installed."""
    agent._install_integrations(Settings())
    application = celery.Celery("unit", set_as_current=False)
    application.conf.task_always_eager = True
    application.conf.broker_url = "memory://"
    yield application
    hooks._reset_for_tests()


def test_celery_task_is_a_transaction(app: Any, records: List[TransactionRecord]) -> None:
    """An eager task run is one transaction named task.name in group Celery."""

    @app.task(name="unit.add")
    def add(x: int, y: int) -> int:
        return x + y

    assert add.delay(2, 3).get() == 5
    (job,) = records
    assert (job.name, job.group, job.errors) == ("unit.add", "Celery", ())
    assert job.attributes["job.system"] == "Celery" and job.attributes["job.outcome"] == "ok"


def test_celery_failure_and_hostile_headers(app: Any, records: List[TransactionRecord]) -> None:
    """A raising task is an error; hostile trace headers give it a trace of its own."""

    @app.task(name="unit.fails")
    def fails() -> None:
        raise LookupError("gone")

    result = fails.apply(headers={"traceparent": "00-zz-yy-01", "tasktrace_enqueued_at": "x"})
    assert result.failed()
    (job,) = records
    assert [e.type for e in job.errors] == ["builtins:LookupError"]
    assert job.attributes["job.outcome"] == "error"
    assert job.parent_span_id is None and "job.queue_wait_ms" not in job.attributes


def test_celery_headers_continue_a_trace(app: Any, records: List[TransactionRecord]) -> None:
    """A valid traceparent in the message headers makes the task its child."""

    @app.task(name="unit.child")
    def child() -> None:
        pass

    child.apply(headers={"traceparent": _context.format_traceparent(TRACE, SPAN)})
    (job,) = records
    assert (job.trace_id, job.parent_span_id) == (TRACE, SPAN)


def test_celery_target_naming_a_task_object(
    app: Any, records: List[TransactionRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target naming an ``@app.task`` object is not wrapped (the worker would never call
    the wrapper) but handed to the integration: its name and group win."""
    import types

    module = types.ModuleType("unit_celery_tasks")

    @app.task(name="unit.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    module.mul = mul  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "unit_celery_tasks", module)
    settings = parse(
        {
            "background_task": [
                {"function": "unit_celery_tasks:mul", "name": "multiply", "group": "Math"}
            ]
        },
        "t.toml",
    )
    hooks.install(settings)
    assert module.mul is mul  # not replaced by a wrapper
    assert [a.ok for a in hooks.applied()] == [True]
    assert mul.delay(3, 4).get() == 12
    (job,) = records
    assert (job.name, job.group) == ("multiply", "Math")


def test_task_objects_are_recognised_without_importing_their_system(app: Any) -> None:
    """A Celery task (or its lazy proxy) is a task object; a function is not."""

    @app.task(name="unit.sub")
    def sub(x: int, y: int) -> int:
        return x - y

    found = task_object(sub)
    assert found is not None and found.description == "Celery task unit.sub"
    assert task_object(len) is None and task_object(lambda: 1) is None
    off = parse({"integrations": {"celery": False}}, "t.toml")
    reason = unsupported_reason(found, off)
    assert reason is not None and "[integrations] celery = true" in reason


VALIDATE_TASKS = """
from celery import Celery

app = Celery("vtasks", broker="memory://", set_as_current=False)


@app.task
def add(x, y):
    return x + y
"""


@pytest.mark.parametrize("celery_on", [True, False])
def test_validate_config_names_celery_tasks(tmp_path: Path, celery_on: bool) -> None:
    """validate-config says "Celery task vtasks.add", and fails the target when the Celery
    integration is off (it would record nothing)."""
    (tmp_path / "vtasks.py").write_text(VALIDATE_TASKS)
    table = "" if celery_on else "[integrations]\ncelery = false\n"
    (tmp_path / "tasktrace.toml").write_text(
        f'{table}[[background_task]]\nfunction = "vtasks:add"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "tasktrace", "validate-config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if celery_on:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok    background_task vtasks:add  -> Celery task vtasks.add (add)" in result.stdout
    else:
        assert result.returncode == 1
        assert "FAIL  background_task vtasks:add  add records nothing" in result.stdout
        assert "[integrations] celery = true" in result.stdout


def test_start_up_imports_no_integration(tmp_path: Path) -> None:
    """Under the launcher, a program that imports no job system loads neither the job
    systems nor tasktrace's integrations; the hooks wait for their modules."""
    probe = (
        "import sys; print(sorted(m for m in sys.modules if m.startswith(('celery', 'rq', "
        "'tasktrace.integrations'))))"
    )
    result = subprocess.run(
        [sys.executable, "-m", "tasktrace", "run-program", "python", "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- OTLP ---------------------------------------------------------------------------------


def _record(**changes: Any) -> TransactionRecord:
    from tasktrace.records import SegmentRecord

    base = TransactionRecord(
        "app",
        "tasks.add",
        "Celery",
        True,
        1700000000.0,
        0.01,
        0.01,
        None,
        1,
        2,
        (),
        {"job.system": "Celery", "job.id": "abc", "job.queue": "celery"},
        (SegmentRecord("enqueue tasks.mul", "Celery", 0.001, 0.001, -1),),
        TRACE,
        7,
        0,
        SPAN,
    )
    return base._replace(**changes)


def test_otlp_job_span_is_a_consumer_with_messaging_attributes() -> None:
    """A job's root span: kind CONSUMER, the producer's span as parent, the messaging
    attributes; its enqueue trace: kind PRODUCER."""
    root, enqueue = _spans(_record(), lambda bits: 99)
    assert root["kind"] == 5 and root["parentSpanId"] == f"{SPAN:016x}"
    attributes = {a["key"]: a["value"] for a in root["attributes"]}
    assert attributes["messaging.system"] == {"stringValue": "celery"}
    assert attributes["messaging.operation.name"] == {"stringValue": "process"}
    assert attributes["messaging.message.id"] == {"stringValue": "abc"}
    assert attributes["messaging.destination.name"] == {"stringValue": "celery"}
    assert enqueue["kind"] == 4 and enqueue["name"] == "enqueue tasks.mul"


def test_otlp_job_with_a_link() -> None:
    """propagate = "link": the job's span carries a span link, not link attributes."""
    link = {_jobs.LINK_TRACE_ID: f"{TRACE:032x}", _jobs.LINK_SPAN_ID: f"{SPAN:016x}"}
    record = _record(parent_span_id=None, attributes={"job.system": "RQ", **link})
    root = _spans(record, lambda bits: 99)[0]
    assert root["links"] == [{"traceId": f"{TRACE:032x}", "spanId": f"{SPAN:016x}"}]
    assert "parentSpanId" not in root
    assert not {a["key"] for a in root["attributes"]} & set(link)


def test_otlp_plain_transaction_stays_internal() -> None:
    """A transaction that is not a job keeps kind INTERNAL and no messaging attributes."""
    root = _spans(_record(attributes={}, segments=(), parent_span_id=None), lambda bits: 99)[0]
    assert root["kind"] == 1 and "parentSpanId" not in root
    assert not any(a["key"].startswith("messaging.") for a in root["attributes"])


# -- Dramatiq, in process (its own StubBroker and a real Worker) ---------------------------


def test_dramatiq_actor_target_and_messages(
    records: List[TransactionRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each processed message is a Dramatiq transaction by actor name; a target naming an
    actor gives it the target's name and group."""
    dramatiq = pytest.importorskip("dramatiq", reason="dramatiq is not installed (test extra)")
    import types

    from dramatiq.brokers.stub import StubBroker

    agent._install_integrations(Settings())
    broker = StubBroker()
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker)
    def plain() -> None:
        pass

    @dramatiq.actor(broker=broker)
    def named() -> None:
        pass

    module = types.ModuleType("unit_dramatiq_actors")
    module.named = named  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "unit_dramatiq_actors", module)
    hooks.install(
        parse(
            {"background_task": [{"function": "unit_dramatiq_actors:named", "group": "Mine"}]},
            "t.toml",
        )
    )
    assert module.named is named
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        plain.send()
        named.send()
        broker.join(plain.queue_name)
        worker.join()
    finally:
        worker.stop()
        hooks._reset_for_tests()
    assert sorted((r.group, r.name) for r in records) == [("Dramatiq", "plain"), ("Mine", "named")]
    assert {r.attributes["job.outcome"] for r in records} == {"ok"}


def test_celery_eager_task_inside_a_transaction_is_a_segment(
    app: Any, records: List[TransactionRecord]
) -> None:
    """An eager task run inside a transaction is a segment of it; its failure, which
    Celery keeps in the result, is not an error of the enclosing transaction."""

    @app.task(name="unit.inner_fails")
    def inner_fails() -> None:
        raise ValueError("kept in the result")

    with tasktrace.BackgroundTask(name="outer"):
        assert inner_fails.delay().failed()
    (outer,) = records
    assert outer.name == "outer" and outer.errors == ()
    assert [s.name for s in outer.segments] == ["unit.inner_fails"]
