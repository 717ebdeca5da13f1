"""Does wrapping a whole library change what its own test suite sees? Run it and find out.

Run from the repository root (any Python >= 3.9 with pip; needs the package index)::

    python benchmarks/transparency/run.py                 # every library, 10-25 minutes
    python benchmarks/transparency/run.py --quick         # one small library, about a minute
    python benchmarks/transparency/run.py --libs toolz,dill --keep --workdir /tmp/tt-work

For each library in :data:`LIBRARIES` (released, pure Python, with its tests in its sdist) it:

1. downloads the pinned sdist (``pip download --no-binary NAME --no-deps NAME==VERSION``)
   into the work folder and unpacks it;
2. makes a virtualenv there with tasktrace installed editable from this checkout, the
   library installed from the unpacked sdist, its pinned test requirements and
   ``pytest-timeout``;
3. writes a tasktrace config that wraps every module of the library: ``mod:*`` and
   ``mod:*.*`` (every method of every class), alternately as ``[[background_task]]`` and
   ``[[function_trace]]`` modules, so traces run both inside and outside transactions;
4. runs the library's tests plainly (``python -m pytest ...``) and then under
   ``tasktrace-admin run-program --config CFG python -m pytest ...`` with a store in the
   work folder, each run with a timeout (on expiry the process group is killed and the run
   reported as hung) and ``_outcomes.py`` recording every test's outcome as it finishes;
5. checks that the instrumented run really recorded tasks (a run where nothing was wrapped
   would prove nothing) and compares the outcomes test by test.

It prints a table (library, version, tests, plain and instrumented passed/failed, tests that
pass plainly but fail instrumented, times) and then each such test with the first lines of
its failure. Tests listed in ``known.toml`` (beside this file, each with a reason) are shown
but do not count. Exit status: 0 when no unlisted test passes plainly and fails
instrumented (and no run hung or recorded nothing), 1 otherwise, 2 when the set-up failed.

The work folder (``--workdir``, default a temporary folder) is deleted afterwards unless
``--keep`` is given or ``--workdir`` names a folder that already existed; downloads and
virtualenvs in a kept work folder are reused by the next run.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KNOWN_FILE = HERE / "known.toml"
PLUGIN = "_outcomes"
#: Variables that would change what tasktrace does; removed from every child's environment.
CLEARED_PREFIXES = ("TASKTRACE_", "OTEL_", "PYTEST_ADDOPTS")

#: Installed in every library's virtualenv, pinned.
HARNESS_REQUIRES = ("pytest==9.2.0", "pytest-timeout==2.4.0")
#: Outcomes that count as "did not pass" for the comparison.
BAD = ("failed", "error", "missing")


@dataclass(frozen=True)
class Library:
    """A released library whose own test suite the harness runs."""

    #: The distribution name on the package index.
    dist: str
    #: The pinned release.
    version: str
    #: Import names of its top-level packages (or single-file modules).
    packages: Tuple[str, ...]
    #: What its tests stress, for the table's reader.
    stresses: str
    #: Test requirements, pinned; installed with the library.
    test_requires: Tuple[str, ...] = ()
    #: pytest arguments, relative to the unpacked sdist (test paths, ignores).
    pytest_args: Tuple[str, ...] = ()
    #: The -k expression for --quick (None: the whole suite).
    quick_k: Optional[str] = None


#: The libraries, chosen to stress different things and not all from one author.
LIBRARIES: Dict[str, Library] = {
    "more-itertools": Library(
        dist="more-itertools",
        version="11.2.1",
        packages=("more_itertools",),
        stresses="generators, iterator protocols",
        pytest_args=("tests",),
    ),
    "attrs": Library(
        dist="attrs",
        version="26.1.0",
        packages=("attr", "attrs"),
        stresses="classes, descriptors, slots, pickling, introspection",
        test_requires=("hypothesis==6.170.17", "pympler==1.1", "cloudpickle==3.1.3"),
        # The type-checker tests run mypy/pyright on files, not the library's code.
        pytest_args=("tests", "--ignore=tests/test_mypy.yml", "--ignore=tests/test_pyright.py"),
    ),
    "toolz": Library(
        dist="toolz",
        version="1.2.0",
        packages=("toolz", "tlz"),
        stresses="currying, decorators, signatures, pickling of partials",
        pytest_args=("toolz",),
    ),
    "dill": Library(
        dist="dill",
        version="0.4.1",
        packages=("dill",),
        stresses="pickling of functions, classes, modules and closures",
        pytest_args=("dill/tests",),
    ),
    "asyncstdlib": Library(
        dist="asyncstdlib",
        version="3.14.0",
        packages=("asyncstdlib",),
        stresses="coroutines, async generators, async context managers",
        pytest_args=("unittests",),
    ),
}
QUICK_LIBRARY = "toolz"


# --- results -------------------------------------------------------------------------------


@dataclass
class TestOutcome:
    """One test's result in one run."""

    nodeid: str
    outcome: str
    when: str = "call"
    crash: str = ""
    longrepr: str = ""


@dataclass
class RunResult:
    """One run of a library's test suite."""

    outcomes: Dict[str, TestOutcome]
    seconds: float
    returncode: Optional[int]
    hung: bool = False
    #: The test that had started but not finished when the run ended (hung or crashed).
    unfinished: Optional[str] = None
    stderr_tail: str = ""

    def count(self, *names: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.outcome in names)


@dataclass
class LibraryResult:
    """A library's plain and instrumented runs and how they differ."""

    name: str
    version: str
    plain: Optional[RunResult] = None
    instrumented: Optional[RunResult] = None
    tasks_recorded: int = 0
    targets: int = 0
    #: (nodeid, instrumented outcome, known reason or None) for tests that pass plainly only.
    regressions: List[Tuple[str, TestOutcome, Optional[str]]] = field(default_factory=list)
    setup_error: Optional[str] = None
    #: tasktrace's own "cannot wrap" warnings in the instrumented run: a target the glob
    #: chose that could not be wrapped is a bug of its own (the program is unchanged, but
    #: the function is not recorded).
    wrap_failures: List[str] = field(default_factory=list)

    @property
    def unexplained(self) -> int:
        return sum(1 for _, _, reason in self.regressions if reason is None)


def parse_outcomes(lines: Iterable[str]) -> Tuple[Dict[str, TestOutcome], Optional[str]]:
    """Read ``_outcomes.py``'s JSON lines.

    Args:
        lines: the lines of the outcomes file.

    Returns:
        The outcome per node id, and the node id of a test that started but never
        finished (or None). A line that is cut off (the process was killed while writing
        it) is ignored.
    """
    outcomes: Dict[str, TestOutcome] = {}
    started: Optional[str] = None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        nodeid = str(record.get("nodeid", ""))
        if record.get("event") == "start":
            started = nodeid
            continue
        outcomes[nodeid] = TestOutcome(
            nodeid=nodeid,
            outcome=str(record.get("outcome", "error")),
            when=str(record.get("when", "call")),
            crash=str(record.get("crash", "")),
            longrepr=str(record.get("longrepr", "")),
        )
        if started == nodeid:
            started = None
    return outcomes, started


def load_known(path: Path) -> List[Dict[str, str]]:
    """The known, inherent differences: ``[[known]]`` tables with library, test, reason.

    ``test`` is a node id or an ``fnmatch`` pattern over node ids. An entry without a
    reason is refused: every exception has to say why it is one.
    """
    if not path.exists():
        return []
    try:
        import tomllib as toml_reader  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python < 3.11
        import tomli as toml_reader  # type: ignore[import-not-found,no-redef,unused-ignore]
    data = toml_reader.loads(path.read_text(encoding="utf-8"))
    entries = data.get("known", [])
    known: List[Dict[str, str]] = []
    for index, entry in enumerate(entries):
        missing = [key for key in ("library", "test", "reason") if not entry.get(key)]
        if missing:
            raise SystemExit(f"{path}: [[known]] entry {index + 1} lacks {', '.join(missing)}")
        known.append({key: str(entry[key]) for key in ("library", "test", "reason")})
    return known


def known_reason(known: Sequence[Dict[str, str]], library: str, nodeid: str) -> Optional[str]:
    """The reason ``known`` gives for ``nodeid`` of ``library`` failing, or None."""
    for entry in known:
        if entry["library"] == library and fnmatch.fnmatchcase(nodeid, entry["test"]):
            return entry["reason"]
    return None


def compare(
    library: str,
    plain: RunResult,
    instrumented: RunResult,
    known: Sequence[Dict[str, str]],
) -> List[Tuple[str, TestOutcome, Optional[str]]]:
    """The tests that passed plainly but failed, errored or are missing instrumented."""
    regressions = []
    for nodeid, before in plain.outcomes.items():
        if before.outcome != "passed":
            continue
        after = instrumented.outcomes.get(nodeid)
        if after is None:
            why = "hung here" if instrumented.unfinished == nodeid else "never ran"
            after = TestOutcome(nodeid=nodeid, outcome="missing", crash=why)
        if after.outcome in BAD:
            regressions.append((nodeid, after, known_reason(known, library, nodeid)))
    return regressions


def failure_lines(outcome: TestOutcome, limit: int = 4) -> List[str]:
    """The first lines of a failure: the crash line, then the ``E`` lines of pytest's text."""
    lines = [outcome.crash] if outcome.crash else []
    for line in outcome.longrepr.splitlines():
        if line.startswith("E ") and line[1:].strip() not in outcome.crash:
            lines.append(line[1:].strip())
        if len(lines) >= limit:
            break
    return [line[:200] for line in lines[:limit]] or [outcome.outcome]


def _fmt_run(run: Optional[RunResult]) -> Tuple[str, str]:
    if run is None:
        return "-", "-"
    passed = str(run.count("passed"))
    failed = str(run.count("failed", "error"))
    if run.hung:
        failed += " (hung)"
    return passed, failed


def format_table(results: Sequence[LibraryResult]) -> str:
    """The results as a Markdown table, one row per library."""
    header = (
        "| library | version | tests | plain passed | plain failed | instr. passed "
        "| instr. failed | pass plain, fail instr. | known | tasks recorded | time plain "
        "| time instr. |"
    )
    rows = [header, "|" + "---|" * 12]
    for result in results:
        if result.setup_error is not None or result.plain is None:
            rows.append(f"| {result.name} | {result.version} | set-up failed |" + " |" * 9)
            continue
        plain_passed, plain_failed = _fmt_run(result.plain)
        instr_passed, instr_failed = _fmt_run(result.instrumented)
        tests = len(result.plain.outcomes)
        known = len(result.regressions) - result.unexplained
        instr_time = f"{result.instrumented.seconds:.1f} s" if result.instrumented else "-"
        rows.append(
            f"| {result.name} | {result.version} | {tests} | {plain_passed} | {plain_failed} "
            f"| {instr_passed} | {instr_failed} | {result.unexplained} | {known} "
            f"| {result.tasks_recorded} | {result.plain.seconds:.1f} s | {instr_time} |"
        )
    return "\n".join(rows)


def format_regressions(results: Sequence[LibraryResult]) -> str:
    """Each test that passes plainly but fails instrumented, with its first failure lines."""
    out: List[str] = []
    for result in results:
        if result.setup_error is not None:
            out.append(f"{result.name}: set-up failed: {result.setup_error}")
        for nodeid, outcome, reason in result.regressions:
            label = f"known: {reason}" if reason else outcome.outcome
            out.append(f"{result.name}: {nodeid}  [{label}]")
            if reason is None:
                out.extend(f"    {line}" for line in failure_lines(outcome))
        run = result.instrumented
        if run is not None and (run.hung or (run.returncode not in (0, 1) and run.stderr_tail)):
            state = "hung" if run.hung else f"exited {run.returncode}"
            out.append(f"{result.name}: the instrumented run {state}")
            if run.unfinished:
                out.append(f"    in {run.unfinished}")
            out.extend(f"    {line}" for line in run.stderr_tail.splitlines()[-5:])
        if run is not None and not result.tasks_recorded:
            out.append(f"{result.name}: the instrumented run recorded no task (nothing wrapped?)")
        out.extend(f"{result.name}: tasktrace: {line}" for line in result.wrap_failures)
    return "\n".join(out)


# --- preparing a library -------------------------------------------------------------------


def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def _check(cmd: Sequence[str], cwd: Optional[Path] = None, timeout: float = 900) -> str:
    proc = subprocess.run(
        list(cmd), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return proc.stdout


def download(lib: Library, workdir: Path) -> Path:
    """The library's unpacked sdist, downloaded from the package index if not there yet."""
    sdists = workdir / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    stem_names = {lib.dist.lower(), lib.dist.replace("-", "_").lower()}

    def find() -> Optional[Path]:
        for path in sorted(sdists.iterdir()):
            name = path.name.lower()
            if name.endswith(".tar.gz") and any(
                name == f"{stem}-{lib.version}.tar.gz" for stem in stem_names
            ):
                return path
        return None

    archive = find()
    if archive is None:
        # --no-binary NAME rather than :all:, so that the build backends pip needs to read
        # the sdist's metadata come as wheels instead of being built from source as well.
        spec = f"{lib.dist}=={lib.version}"
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        _check([*pip, "--no-binary", lib.dist, "-d", str(sdists), spec], timeout=600)
        archive = find()
        if archive is None:
            raise RuntimeError(f"pip download left no sdist for {lib.dist}=={lib.version}")
    target = workdir / "src" / archive.name[: -len(".tar.gz")]
    if not target.exists():
        with tarfile.open(archive) as tar:
            if sys.version_info >= (3, 12):
                tar.extractall(workdir / "src", filter="data")
            else:
                tar.extractall(workdir / "src")  # a pinned release we chose
    if not target.is_dir():
        raise RuntimeError(f"{archive.name} did not unpack into {target.name}/")
    return target


def make_venv(lib: Library, source: Path, workdir: Path) -> Path:
    """A virtualenv with tasktrace (editable), the library and its test requirements."""
    venv = workdir / "venvs" / lib.dist
    python = venv / "bin" / "python"
    stamp = venv / ".tasktrace-harness"
    wanted = json.dumps([lib.version, list(lib.test_requires)])
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    if venv.exists():
        shutil.rmtree(venv)
    _check([sys.executable, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "-q"]
    _check([*pip, "-e", str(REPO)])
    _check([*pip, str(source), *HARNESS_REQUIRES, *lib.test_requires])
    stamp.write_text(wanted)
    return python


def _package_dir(source: Path, package: str) -> Optional[Path]:
    for base in (source, source / "src"):
        if (base / package / "__init__.py").exists():
            return base / package
        if (base / f"{package}.py").exists():
            return base / f"{package}.py"
    return None


def library_modules(lib: Library, source: Path) -> List[Tuple[str, Path]]:
    """Every importable module of the library (its test modules left out), sorted."""
    modules: List[Tuple[str, Path]] = []
    for package in lib.packages:
        root = _package_dir(source, package)
        if root is None:
            raise RuntimeError(f"no package {package!r} in {source.name}")
        if root.is_file():
            modules.append((package, root))
            continue
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            if any(part in ("tests", "test", "testing") for part in parts):
                continue
            if parts[-1] in ("__main__", "conftest"):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules.append((".".join(parts), path))
    return sorted(modules)


def _has_classes(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return True
    return any(isinstance(node, ast.ClassDef) for node in tree.body)


def write_config(lib: Library, source: Path, path: Path, app_name: str) -> int:
    """Write the tasktrace config wrapping every module; returns how many targets it has."""
    lines = [
        f"# Generated by benchmarks/transparency/run.py for {lib.dist} {lib.version}.",
        f'app_name = "{app_name}"',
        "",
    ]
    targets = 0
    for index, (module, file) in enumerate(library_modules(lib, source)):
        table = "background_task" if index % 2 == 0 else "function_trace"
        patterns = ["*"] + (["*.*"] if _has_classes(file) else [])
        for pattern in patterns:
            lines += [f"[[{table}]]", f'function = "{module}:{pattern}"', ""]
            targets += 1
    path.write_text("\n".join(lines), encoding="utf-8")
    return targets


def wrap_failures(log: Path) -> List[str]:
    """tasktrace's "cannot wrap" warnings in its log file, each once, in order."""
    if not log.exists():
        return []
    seen: Dict[str, None] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "cannot wrap" in line:
            seen.setdefault(line.partition("tasktrace: ")[2] or line, None)
    return list(seen)


def count_tasks(db: Path) -> int:
    """How many transactions the instrumented run stored (0 if there is no store)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT COALESCE(SUM(count), 0) FROM metrics").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


# --- running a suite -----------------------------------------------------------------------


def run_suite(
    cmd: Sequence[str],
    cwd: Path,
    env: Dict[str, str],
    outcomes_file: Path,
    log_file: Path,
    timeout: float,
) -> RunResult:
    """Run one test suite in its own process group; kill the group if it outlives timeout."""
    outcomes_file.unlink(missing_ok=True)
    env = dict(env, TASKTRACE_HARNESS_OUTCOMES=str(outcomes_file))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    hung = False
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            returncode: Optional[int] = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            _kill_group(proc)
            returncode = None
    seconds = time.perf_counter() - start
    lines = outcomes_file.read_text(encoding="utf-8").splitlines() if outcomes_file.exists() else []
    outcomes, unfinished = parse_outcomes(lines)
    tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-12:]
    return RunResult(
        outcomes=outcomes,
        seconds=seconds,
        returncode=returncode,
        hung=hung,
        unfinished=unfinished,
        stderr_tail="\n".join(tail),
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_library(
    name: str, workdir: Path, args: argparse.Namespace, known: Sequence[Dict[str, str]]
) -> LibraryResult:
    """Prepare one library and run its suite plainly and instrumented."""
    lib = LIBRARIES[name]
    result = LibraryResult(name=name, version=lib.version)
    say = lambda text: print(f"[{name}] {text}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        say("downloading and unpacking the sdist")
        source = download(lib, workdir)
        say("making the virtualenv")
        python = make_venv(lib, source, workdir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        result.setup_error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        say(f"set-up failed: {exc}")
        return result
    runs = workdir / "runs" / name
    runs.mkdir(parents=True, exist_ok=True)
    config = runs / "tasktrace.toml"
    db = runs / "tasktrace.db"
    app_name = f"transparency-{name}"
    result.targets = write_config(lib, source, config, app_name)
    pytest = [
        "-m", "pytest", *lib.pytest_args, "-p", PLUGIN, "-p", "no:cacheprovider",
        "-q", "--continue-on-collection-errors", f"--timeout={args.test_timeout}",
        "--timeout-method=signal",
    ]  # fmt: skip
    if args.quick and lib.quick_k:
        pytest += ["-k", lib.quick_k]
    if args.k:
        pytest += ["-k", args.k]
    env = _env({"TASKTRACE_APP_NAME": app_name, "TASKTRACE_DB": str(db), "HOME": str(runs)})
    # pytest captures stderr while it imports test modules, where the hooks run: tasktrace
    # logs to a file of its own instead, read back for its "cannot wrap" warnings.
    tt_log = runs / "tasktrace.log"
    say(f"plain run ({' '.join(pytest[1:])})")
    result.plain = run_suite(
        [str(python), *pytest], source, env, runs / "plain.jsonl", runs / "plain.log",
        args.timeout,
    )  # fmt: skip
    say(f"plain: {result.plain.count('passed')} passed in {result.plain.seconds:.1f} s")
    for stale in (db, tt_log):
        if stale.exists():
            stale.unlink()
    admin = python.parent / "tasktrace-admin"
    # Instrumented runs get a timeout scaled from the plain run: a hang shows sooner.
    timeout = min(args.timeout, max(180.0, 6 * result.plain.seconds))
    say(f"instrumented run ({result.targets} targets, timeout {timeout:.0f} s)")
    result.instrumented = run_suite(
        [str(admin), "run-program", "--config", str(config), str(python), *pytest],
        source, dict(env, TASKTRACE_LOG=str(tt_log)), runs / "instrumented.jsonl",
        runs / "instrumented.log", timeout,
    )  # fmt: skip
    result.tasks_recorded = count_tasks(db)
    result.wrap_failures = wrap_failures(tt_log)
    result.regressions = compare(name, result.plain, result.instrumented, known)
    say(
        f"instrumented: {result.instrumented.count('passed')} passed in "
        f"{result.instrumented.seconds:.1f} s, {result.tasks_recorded} tasks recorded, "
        f"{result.unexplained} pass plainly and fail instrumented"
    )
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_LIBRARY}")
    parser.add_argument("--libs", help="comma-separated names: " + ",".join(LIBRARIES))
    parser.add_argument("--workdir", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("-k", help="a pytest -k expression for every library")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per run, seconds")
    parser.add_argument(
        "--test-timeout", type=float, help="per test, seconds (default 120; 20 with --quick)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.test_timeout is None:
        args.test_timeout = 20.0 if args.quick else 120.0

    if args.libs:
        names = [n.strip() for n in args.libs.split(",") if n.strip()]
    else:
        names = [QUICK_LIBRARY] if args.quick else list(LIBRARIES)
    unknown = [n for n in names if n not in LIBRARIES]
    if unknown:
        parser.error(f"unknown libraries {unknown}; choose from {', '.join(LIBRARIES)}")
    known = load_known(KNOWN_FILE)

    made_here = args.workdir is None or not args.workdir.exists()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tasktrace-transparency-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {workdir}", file=sys.stderr)
    try:
        results = [run_library(name, workdir, args, known) for name in names]
    finally:
        if made_here and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(format_table(results))
    details = format_regressions(results)
    print()
    print(details or "No test passes plainly and fails instrumented.")
    if args.json:
        args.json.write_text(json.dumps([_as_json(r) for r in results], indent=2) + "\n")
    if any(r.setup_error for r in results):
        return 2
    bad = any(
        r.unexplained
        or (r.instrumented is not None and r.instrumented.hung)
        or r.tasks_recorded == 0
        or r.wrap_failures
        for r in results
    )
    return 1 if bad else 0


def _as_json(result: LibraryResult) -> Dict[str, Any]:
    def run(r: Optional[RunResult]) -> Optional[Dict[str, Any]]:
        if r is None:
            return None
        return {
            "tests": len(r.outcomes),
            "passed": r.count("passed"),
            "failed": r.count("failed", "error"),
            "seconds": round(r.seconds, 2),
            "hung": r.hung,
            "returncode": r.returncode,
        }

    return {
        "library": result.name,
        "version": result.version,
        "plain": run(result.plain),
        "instrumented": run(result.instrumented),
        "tasks_recorded": result.tasks_recorded,
        "targets": result.targets,
        "setup_error": result.setup_error,
        "wrap_failures": result.wrap_failures,
        "pass_plain_fail_instrumented": [
            {"test": n, "outcome": o.outcome, "failure": failure_lines(o), "known": k}
            for n, o, k in result.regressions
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
