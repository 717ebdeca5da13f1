"""tasktrace never draws from, or moves, the program's global ``random`` state (issue 11)."""

from __future__ import annotations

import os
import random
import sys
from typing import List

import pytest

import tasktrace
from tasktrace import _rng
from tasktrace.records import TransactionRecord
from tasktrace.reporters import otlp
from tasktrace.reporters._row_budget import RowBudget


def _expected_after_seed(seed: int, draws: int = 3) -> List[float]:
    plain = random.Random(seed)
    return [plain.random() for _ in range(draws)]


def test_a_task_after_seed_leaves_the_sequence_alone(records: List[TransactionRecord]) -> None:
    """``random.seed(42); job(); random.random()`` gives what it gives without tasktrace."""

    @tasktrace.background_task(name="job")
    def job() -> int:
        with tasktrace.FunctionTrace("inner"):
            return 1

    random.seed(42)
    job()
    assert [random.random() for _ in range(3)] == _expected_after_seed(42)
    assert len(records) == 1 and records[0].trace_id


def test_sampling_and_span_ids_leave_the_sequence_alone(
    records: List[TransactionRecord],
) -> None:
    """The SQLite reporter's sampling and the OTLP reporter's span ids use their own source."""

    @tasktrace.background_task(name="many")
    def many() -> None:
        with tasktrace.FunctionTrace("inner"):
            pass

    for _ in range(50):
        many()
    random.seed(7)
    budget = RowBudget(5, 5, 5.0)
    budget.offer(records)
    budget.offer(records)  # (a second harvest in the same slot: the reservoir draws)
    kept = budget.take_all()
    assert len(kept) == 5
    request = otlp.build_request(records)
    assert request["resourceSpans"]
    assert [random.random() for _ in range(3)] == _expected_after_seed(7)


def test_the_source_is_not_the_global_one() -> None:
    """Seeding the global state does not make tasktrace's ids repeat."""
    random.seed(1)
    first = _rng.getrandbits(128)
    random.seed(1)
    assert _rng.getrandbits(128) != first
    assert 0 <= _rng.randrange(10) < 10 and 0.0 <= _rng.random() < 1.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_children_draw_different_ids() -> None:
    """Each child reseeds: no two processes of a forking worker make the same ids."""
    values = []
    for _ in range(3):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.write(write_end, b"%d" % _rng.getrandbits(64))
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as child:
            values.append(int(child.read()))
        os.waitpid(pid, 0)
    values.append(_rng.getrandbits(64))
    assert len(set(values)) == len(values)


def test_harvest_thread_leaves_the_sequence_alone(tmp_path: object) -> None:
    """Under the launcher, with the harvest thread sampling rows while the program sleeps
    after ``seed()``, the program's next numbers are the plain ones."""
    import subprocess
    from pathlib import Path

    work = Path(str(tmp_path))
    program = work / "seeded.py"
    program.write_text(
        "import random, time\n"
        "import tasktrace\n"
        "@tasktrace.background_task(name='busy')\n"
        "def busy():\n"
        "    with tasktrace.FunctionTrace('inner'):\n"
        "        pass\n"
        "for _ in range(5000):\n"
        "    busy()\n"
        "random.seed(1)\n"
        "time.sleep(1.0)\n"  # several harvests (every 0.1 s), each sampling 5,000 rows
        "print(repr([random.random() for _ in range(3)]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env.update(
        TASKTRACE_DB=str(work / "tasks.db"),
        TASKTRACE_HARVEST_INTERVAL="0.1",
        TASKTRACE_APP_NAME="seeded",
    )
    done = subprocess.run(
        [sys.executable, "-m", "tasktrace", "run-python", str(program)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr(_expected_after_seed(1))
    assert (work / "tasks.db").exists()
