"""The transparency harness (``benchmarks/transparency/run.py``): its outcome plugin, its
parsing and comparison, its config generation, its hang detection, and (deselected by
default, as it takes over a minute and needs the package index) a ``--quick`` run."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
RUN_PY = REPO / "benchmarks" / "transparency" / "run.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("transparency_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


harness = _load()


def _line(**record: Any) -> str:
    return json.dumps(record)


def _run(outcomes: Dict[str, str], unfinished: Any = None) -> Any:
    return harness.RunResult(
        outcomes={n: harness.TestOutcome(nodeid=n, outcome=o) for n, o in outcomes.items()},
        seconds=1.0,
        returncode=0,
        unfinished=unfinished,
    )


def test_parse_outcomes_reads_done_lines_and_names_the_unfinished_test() -> None:
    """Finished tests get their outcome; a started test with no result is the unfinished one."""
    lines = [
        _line(event="start", nodeid="t.py::a"),
        _line(event="done", nodeid="t.py::a", outcome="passed", when="call"),
        _line(event="start", nodeid="t.py::b"),
        _line(event="done", nodeid="t.py::b", outcome="failed", crash="t.py:3: boom"),
        _line(event="start", nodeid="t.py::c"),
        '{"event": "done", "nodeid": "t.py::c", "outc',  # cut off by a kill
    ]
    outcomes, unfinished = harness.parse_outcomes(lines)
    assert {n: o.outcome for n, o in outcomes.items()} == {"t.py::a": "passed", "t.py::b": "failed"}
    assert outcomes["t.py::b"].crash == "t.py:3: boom"
    assert unfinished == "t.py::c"


def test_compare_lists_tests_that_pass_plainly_only_and_applies_known_reasons() -> None:
    """Passed-then-failed, errored or missing tests are listed; known ones carry their reason."""
    plain = _run({"a": "passed", "b": "passed", "c": "passed", "d": "failed", "e": "passed"})
    instrumented = _run({"a": "passed", "b": "failed", "d": "failed", "e": "error"}, "c")
    known = [{"library": "lib", "test": "e*", "reason": "inherent"}]
    found = harness.compare("lib", plain, instrumented, known)
    assert [(n, o.outcome, r) for n, o, r in found] == [
        ("b", "failed", None),
        ("c", "missing", None),
        ("e", "error", "inherent"),
    ]
    assert found[1][1].crash == "hung here"


def test_table_counts_and_marks_a_hung_run() -> None:
    """A row per library with its counts; a hung instrumented run says so."""
    result = harness.LibraryResult(name="lib", version="1.0")
    result.plain = _run({"a": "passed", "b": "passed"})
    result.instrumented = _run({"a": "passed"}, unfinished="b")
    result.instrumented.hung = True
    result.regressions = harness.compare("lib", result.plain, result.instrumented, [])
    result.tasks_recorded = 7
    table = harness.format_table([result]).splitlines()
    assert table[0].startswith("| library | version | tests |")
    assert table[2] == "| lib | 1.0 | 2 | 2 | 0 | 1 | 0 (hung) | 1 | 0 | 7 | 1.0 s | 1.0 s |"
    details = harness.format_regressions([result])
    assert "lib: b  [missing]" in details
    assert "the instrumented run hung" in details


def test_wrap_failures_and_an_empty_store_are_said(tmp_path: Path) -> None:
    """tasktrace's "cannot wrap" warnings are read from its log file, each once, and
    listed with a run that recorded nothing."""
    log = tmp_path / "tasktrace.log"
    line = (
        "tasktrace WARNING [pid 1] tasktrace: cfg.toml: background_task[6]: 'm:*': "
        "cannot wrap 'diff': bad; continuing without it"
    )
    log.write_text(f"{line}\n{line}\ntasktrace WARNING [pid 1] tasktrace: matched nothing\n")
    assert harness.wrap_failures(log) == [line.partition("tasktrace: ")[2]]
    assert harness.wrap_failures(tmp_path / "missing.log") == []
    result = harness.LibraryResult(name="lib", version="1.0")
    result.plain = _run({"a": "passed"})
    result.instrumented = _run({"a": "passed"})
    result.wrap_failures = harness.wrap_failures(log)
    details = harness.format_regressions([result])
    assert "lib: the instrumented run recorded no task" in details
    assert "lib: tasktrace: cfg.toml: background_task[6]: 'm:*': cannot wrap 'diff'" in details


def test_failure_lines_start_with_the_crash_then_the_E_lines() -> None:
    """The first lines of a failure: where it crashed, then pytest's E lines, at most four."""
    outcome = harness.TestOutcome(
        nodeid="x",
        outcome="failed",
        crash="t.py:9: AssertionError: nope",
        longrepr="def test():\n>   assert f() == 2\nE   assert 1 == 2\nE    +  where 1 = f()\n",
    )
    assert harness.failure_lines(outcome) == [
        "t.py:9: AssertionError: nope",
        "assert 1 == 2",
        "+  where 1 = f()",
    ]


def test_known_file_entries_need_a_reason(tmp_path: Path) -> None:
    """An entry of known.toml without a reason is refused; the shipped file parses."""
    bad = tmp_path / "known.toml"
    bad.write_text('[[known]]\nlibrary = "toolz"\ntest = "t::x"\n')
    with pytest.raises(SystemExit, match="lacks reason"):
        harness.load_known(bad)
    assert isinstance(harness.load_known(harness.KNOWN_FILE), list)


def test_config_wraps_every_module_alternately_and_classes_methods(tmp_path: Path) -> None:
    """Every module but tests gets ``mod:*`` (and ``mod:*.*`` if it has classes), alternating
    background tasks and function traces; the written file is a valid tasktrace config."""
    pkg = tmp_path / "src" / "pkg"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    return 1\n")
    (pkg / "b.py").write_text("class C:\n    def m(self):\n        return 2\n")
    (pkg / "tests" / "test_a.py").write_text("def test_f():\n    pass\n")
    lib = harness.Library(dist="pkg", version="1", packages=("pkg",), stresses="")
    assert [m for m, _ in harness.library_modules(lib, tmp_path)] == ["pkg", "pkg.a", "pkg.b"]
    config = tmp_path / "tasktrace.toml"
    assert harness.write_config(lib, tmp_path, config, "app") == 4
    text = config.read_text()
    assert '[[background_task]]\nfunction = "pkg:*"' in text
    assert '[[function_trace]]\nfunction = "pkg.a:*"' in text
    assert '[[background_task]]\nfunction = "pkg.b:*.*"' in text
    proc = subprocess.run(
        [sys.executable, "-m", "tasktrace", "show-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def _suite(tmp_path: Path, body: str) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_s.py").write_text(textwrap.dedent(body))
    return suite


def _run_suite(tmp_path: Path, suite: Path, timeout: float) -> Any:
    cmd = [sys.executable, "-m", "pytest", "-p", harness.PLUGIN, "-p", "no:cacheprovider", "-q"]
    cmd.append("--continue-on-collection-errors")
    return harness.run_suite(
        cmd, suite, harness._env(), tmp_path / "out.jsonl", tmp_path / "log.txt", timeout
    )


def test_run_suite_records_each_outcome_through_the_plugin(tmp_path: Path) -> None:
    """The plugin reports passed, failed, error, skipped, xfailed and collection errors."""
    suite = _suite(
        tmp_path,
        """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("setup broke")

        def test_ok(): pass
        def test_bad(): assert 1 == 2
        def test_error(broken): pass
        def test_skip(): pytest.skip("no")
        @pytest.mark.xfail(strict=True)
        def test_xfail(): assert False
        """,
    )
    (suite / "test_broken.py").write_text("import no_such_module_here\n")
    result = _run_suite(tmp_path, suite, timeout=120)
    got = {n.split("::")[-1]: o.outcome for n, o in result.outcomes.items()}
    assert got == {
        "test_ok": "passed",
        "test_bad": "failed",
        "test_error": "error",
        "test_skip": "skipped",
        "test_xfail": "xfailed",
        "test_broken.py": "error",
    }
    assert "assert 1 == 2" in result.outcomes["test_s.py::test_bad"].crash
    assert not result.hung and result.unfinished is None


def test_run_suite_kills_a_hung_run_and_names_the_test(tmp_path: Path) -> None:
    """A run past its timeout is killed with its process group and reported as hung."""
    suite = _suite(
        tmp_path,
        """
        import subprocess, sys, time

        def test_first(): pass
        def test_hangs():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            time.sleep(600)
        """,
    )
    result = _run_suite(tmp_path, suite, timeout=8)
    assert result.hung and result.returncode is None
    assert result.outcomes["test_s.py::test_first"].outcome == "passed"
    assert result.unfinished == "test_s.py::test_hangs"
    assert result.seconds < 60


def _index_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.benchmark
def test_quick_run_prints_the_table(tmp_path: Path) -> None:
    """``run.py --quick`` (about 70 s: a virtualenv and one library) prints its table.

    Deselected by default (``-m benchmark`` runs it): it needs the package index and takes
    longer than a test should. It asserts the table only, not that the library passes: the
    harness's exit status says that.
    """
    if not _index_reachable():
        pytest.skip("the package index is unreachable")
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "--quick", "--workdir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    lines: List[str] = proc.stdout.splitlines()
    assert lines[0].startswith("| library | version | tests |")
    assert lines[2].startswith(f"| {harness.QUICK_LIBRARY} | ")
