"""What tasktrace costs a job next to its peers: New Relic, OpenTelemetry SDK and ddtrace.

Run from the repository root (any Python >= 3.9; the peers get their own virtualenv)::

    python benchmarks/peers/run.py            # the full run, about 8-12 minutes on 2 cores
    python benchmarks/peers/run.py --quick    # a smoke run, about 2 minutes

It creates (or reuses) ``benchmarks/peers/.venv`` with ``newrelic``, ``opentelemetry-sdk``,
``opentelemetry-instrumentation``, ``opentelemetry-distro`` and ``ddtrace`` from the package
index and tasktrace installed editable from this checkout, then measures, in one run:

1. per-call cost of a trivial function, bare and under each agent (a task; a task with 10
   nested function traces / child spans; the agent disabled), every variant interleaved
   round-robin in ONE process (``_worker.py percall``), median of ``--repeats`` samples;
2. whole-process start-up of ``python -c pass`` under each agent's launcher, interleaved
   with bare ``python -c pass``, median of ``--startup-repeats`` runs;
3. sustained single-thread throughput, delivery included, one fresh process per agent and
   repeat, interleaved; and RSS growth over ``--rss-tasks`` tasks.

Every figure is printed only if its agent is shown to have recorded what it was given:
tasktrace's rows and metrics in its SQLite file, the spans reaching a counting OpenTelemetry
exporter, the traces reaching a ddtrace ``TraceFilter``, and New Relic's transaction count
and the ``metric_data`` its developer-mode fake collector received. The results go to
``benchmarks/peers/RESULTS.md`` (and the raw samples to ``results.json`` beside it).

No traffic leaves the machine: as root, the measurements run in a private network
namespace that has only a loopback interface (``unshare -n``); in any case every agent is
configured for loopback or nothing (New Relic in developer mode with cloud detection off,
OpenTelemetry exporters ``none`` or a counting exporter, ddtrace's agent URL a closed port
on 127.0.0.1, telemetry and remote configuration off), and the worker's audit hook refuses
a connection to any other address.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "_worker.py")
PEERS = ("tasktrace", "newrelic", "opentelemetry", "ddtrace")
#: Throughput adds tasktrace with a buffer that holds the whole run: its default 10,000-record
#: buffer evicts rows (counted, kept in the exact metrics) when the harvest thread cannot
#: keep up, so only this variant shows the rate at which every task's row is written.
THROUGHPUT_PEERS = ("tasktrace", "tasktrace-lossless", "newrelic", "opentelemetry", "ddtrace")
PEER_TITLES = {
    "tasktrace": "tasktrace",
    "tasktrace-lossless": "tasktrace, every row stored",
    "newrelic": "New Relic",
    "opentelemetry": "OpenTelemetry SDK",
    "ddtrace": "ddtrace",
}
#: Installed into the peers' virtualenv from the package index (unpinned: the run records
#: the versions it measured).
PEER_REQUIREMENTS = (
    "newrelic",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-distro",
    "ddtrace",
)
#: Optional, for profiling a missed target; the run goes on without it.
OPTIONAL_REQUIREMENTS = ("py-spy",)
#: Variables that would change what an agent does; removed from every child's environment.
AGENT_VARIABLE_PREFIXES = ("NEW_RELIC_", "NEWRELIC_", "DD_", "OTEL_", "TASKTRACE_")

# The targets, as ratios of figures measured in the same run.
TARGET_TASK_VS_OTEL = 0.15
TARGET_TASK_VS_NEWRELIC = 0.03
TARGET_STARTUP_VS_FASTEST = 0.15
TARGET_THROUGHPUT_VS_FASTEST = 3.0
#: The largest share of tasks an agent may have dropped in a throughput run for its figure
#: to count as recorded (the drop is printed with it).
MAX_LOSS = 0.01

NEWRELIC_INI = """\
# New Relic in developer mode: a fake collector inside the agent, no network.
[newrelic]
app_name = bench
developer_mode = true
log_file = stderr
log_level = error
# Cloud and container detection would query metadata services; they are off.
utilization.detect_aws = false
utilization.detect_azure = false
utilization.detect_azurefunction = false
utilization.detect_azureappservice = false
utilization.detect_gcp = false
utilization.detect_pcf = false
utilization.detect_docker = false
utilization.detect_kubernetes = false

# The per-call variants of all agents share one process. New Relic's import hooks would
# wrap the OpenTelemetry API (its "hybrid agent" bridge, even with it off) and sqlite3
# (which tasktrace's reporter uses), so the other agents would pay for New Relic; they are
# off. Nothing New Relic itself records goes through them.
[import-hook:opentelemetry.context]
enabled = false
[import-hook:opentelemetry.trace]
enabled = false
[import-hook:opentelemetry.instrumentation.propagators]
enabled = false
[import-hook:opentelemetry.instrumentation.utils]
enabled = false
[import-hook:opentelemetry.util.http]
enabled = false
[import-hook:sqlite3]
enabled = false
[import-hook:sqlite3.dbapi2]
enabled = false
"""

#: A few targets in modules the program never imports: what every worker process pays.
TASKTRACE_TOML = """\
app_name = "bench"

[[background_task]]
function = "billing.jobs:send_invoices"
group = "Task"

[[background_task]]
function = "billing.jobs:Exporter.*"

[[background_task]]
function = "reports.nightly:build"

[[function_trace]]
function = "billing.db:Client.query"

[[function_trace]]
function = "reports.render:to_pdf"
"""


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout stays clean."""
    sys.stderr.write(f"[peers {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# -- the peers' virtualenv ------------------------------------------------------------------


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def ensure_venv(venv: str, reinstall: bool) -> None:
    """Create ``venv`` with the peers and tasktrace (editable) unless it is already there."""
    marker = os.path.join(venv, ".peers-installed")
    wanted = json.dumps({"requirements": PEER_REQUIREMENTS, "repo": REPO})
    if not reinstall and os.path.exists(marker):
        with open(marker) as fh:
            if fh.read() == wanted:
                log(f"reusing {venv}")
                return
    if reinstall and os.path.isdir(venv):
        shutil.rmtree(venv)
    if not os.path.exists(venv_python(venv)):
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [venv_python(venv), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    log("installing " + " ".join(PEER_REQUIREMENTS) + " (pip)")
    subprocess.run([*pip, *PEER_REQUIREMENTS], check=True)
    log(f"installing tasktrace from {REPO} (editable)")
    subprocess.run([*pip, "-e", REPO], check=True)
    for extra in OPTIONAL_REQUIREMENTS:
        if subprocess.run([*pip, extra], check=False).returncode != 0:
            log(f"optional {extra} not installed; profiling will do without it")
    with open(marker, "w") as fh:
        fh.write(wanted)


# -- loopback only ----------------------------------------------------------------------


def can_unshare() -> bool:
    return (
        sys.platform.startswith("linux")
        and os.geteuid() == 0
        and shutil.which("unshare") is not None
        and subprocess.run(
            ["unshare", "-n", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        == 0
    )


def bring_loopback_up() -> None:
    """Set ``lo`` up in a fresh network namespace (ioctl: no ``ip`` binary needed)."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, siocgifflags, request)[:18])[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def only_loopback() -> bool:
    """True if this process can reach no interface but loopback."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return False
    return names == ["lo"]


# -- environments -----------------------------------------------------------------------


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Setup:
    """Files and environments shared by every measurement of one run."""

    def __init__(self, tmp: str, venv: str) -> None:
        self.tmp = tmp
        self.venv = venv
        self.python = venv_python(venv)
        self.nr_config = os.path.join(tmp, "newrelic.ini")
        self.tt_config = os.path.join(tmp, "tasktrace.toml")
        with open(self.nr_config, "w") as fh:
            fh.write(NEWRELIC_INI)
        with open(self.tt_config, "w") as fh:
            fh.write(TASKTRACE_TOML)
        dead = closed_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(AGENT_VARIABLE_PREFIXES)}
        base.pop("PYTHONPATH", None)
        base["PYTHONDONTWRITEBYTECODE"] = "0"
        self.base = base
        self.agents = {
            "tasktrace": {"TASKTRACE_APP_NAME": "bench", "TASKTRACE_DB": ""},
            "newrelic": {"NEW_RELIC_CONFIG_FILE": self.nr_config},
            "opentelemetry": {
                "OTEL_SERVICE_NAME": "bench",
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
            },
            "ddtrace": {
                "DD_SERVICE": "bench",
                "DD_TRACE_AGENT_URL": f"http://127.0.0.1:{dead}",
                "DD_DOGSTATSD_URL": f"udp://127.0.0.1:{dead}",
                "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
                "DD_REMOTE_CONFIGURATION_ENABLED": "false",
                "DD_TRACE_STARTUP_LOGS": "false",
            },
        }

    def env(self, *agents: str, db: Optional[str] = None) -> Dict[str, str]:
        env = dict(self.base)
        for agent in agents:
            env.update(self.agents[agent])
        if "tasktrace" in agents:
            env["TASKTRACE_DB"] = db or os.path.join(self.tmp, "tasktrace.db")
        return env

    def worker(self, mode: str, args: List[str], env: Dict[str, str], name: str) -> Dict[str, Any]:
        """Run ``_worker.py MODE`` in the peers' venv; its JSON result (stderr to a log)."""
        out = os.path.join(self.tmp, f"{name}.json")
        err = os.path.join(self.tmp, f"{name}.stderr")
        cmd = [self.python, WORKER, mode, "--out", out, "--nr-config", self.nr_config, *args]
        with open(err, "w") as stderr:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        if proc.returncode != 0:
            with open(err) as fh:
                tail = fh.read()[-3000:]
            raise SystemExit(f"worker {mode} {' '.join(args)} failed ({proc.returncode}):\n{tail}")
        with open(out) as fh:
            result: Dict[str, Any] = json.load(fh)
        return result


# -- 1. per call ---------------------------------------------------------------------------


def run_percall(setup: Setup, args: argparse.Namespace) -> Dict[str, Any]:
    log(
        f"per-call: {args.repeats} repeats, ~{args.sample_ms} ms per sample, all agents in one process"
    )
    env = setup.env(*PEERS)
    result = setup.worker(
        "percall",
        ["--repeats", str(args.repeats), "--sample-ms", str(args.sample_ms)],
        env,
        "percall",
    )
    return result


# -- 2. start-up ----------------------------------------------------------------------------

#: Run once under each launcher before timing: proves the agent was really loaded.
STARTUP_PROBES = {
    "tasktrace": (
        "import sys\nfrom tasktrace._state import STATE\nprint(STATE.initialized and STATE.enabled)"
    ),
    "newrelic": (
        "import sys\n"
        "from newrelic.core.config import global_settings\n"
        "print('newrelic.config' in sys.modules and global_settings().enabled)"
    ),
    "opentelemetry": (
        "from opentelemetry import trace\n"
        "print(type(trace.get_tracer_provider()).__module__ == 'opentelemetry.sdk.trace')"
    ),
    "ddtrace": (
        "import sys\n"
        "from ddtrace.trace import tracer\n"
        "print('ddtrace.bootstrap.preload' in sys.modules and tracer.enabled)"
    ),
}


def startup_commands(setup: Setup) -> Dict[str, Tuple[List[str], Dict[str, str]]]:
    bin_ = os.path.join(setup.venv, "bin")
    py = setup.python
    return {
        "bare": ([py, "-c", "pass"], setup.env()),
        "tasktrace": (
            [os.path.join(bin_, "tasktrace-admin"), "run-program", "--config", setup.tt_config, py],
            setup.env("tasktrace"),
        ),
        "newrelic": (
            [os.path.join(bin_, "newrelic-admin"), "run-program", py],
            setup.env("newrelic"),
        ),
        "opentelemetry": (
            [os.path.join(bin_, "opentelemetry-instrument"), py],
            setup.env("opentelemetry"),
        ),
        "ddtrace": ([os.path.join(bin_, "ddtrace-run"), py], setup.env("ddtrace")),
    }


def run_startup(setup: Setup, args: argparse.Namespace) -> Dict[str, Any]:
    commands = startup_commands(setup)
    confirmed: Dict[str, Any] = {"bare": True}
    for name, (prefix, env) in commands.items():
        if name == "bare":
            continue
        proc = subprocess.run(
            [*prefix, "-c", STARTUP_PROBES[name]],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        ok = proc.returncode == 0 and proc.stdout.strip() == "True"
        confirmed[name] = ok or f"probe printed {proc.stdout.strip()!r}, exit {proc.returncode}"
        if not ok:
            log(f"start-up: {name} not confirmed loaded: {proc.stderr[-500:]}")
    log(f"start-up: {args.startup_repeats} interleaved runs of each launcher with python -c pass")
    samples: Dict[str, List[float]] = {k: [] for k in commands}

    def once(name: str) -> float:
        prefix, env = commands[name]
        started = time.perf_counter()
        subprocess.run(
            [*prefix, "-c", "pass"] if name != "bare" else prefix,
            env=env,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - started

    for name in commands:  # warm the page cache and the .pyc files
        once(name)
        once(name)
    for _ in range(args.startup_repeats):
        for name in commands:
            samples[name].append(once(name) * 1000.0)
    return {
        "repeats": args.startup_repeats,
        "commands": {
            k: shlex.join([*v[0], "-c", "pass"] if k != "bare" else v[0])
            for k, v in commands.items()
        },
        "median_ms": {k: statistics.median(v) for k, v in samples.items()},
        "samples_ms": samples,
        "confirmed": confirmed,
    }


# -- 3. throughput and memory ---------------------------------------------------------------


def run_throughput(setup: Setup, args: argparse.Namespace) -> Dict[str, Any]:
    log(
        f"throughput: {args.tasks:,} tasks per run, {args.throughput_repeats} runs per agent, "
        "interleaved, a fresh process each"
    )
    runs: Dict[str, List[Dict[str, Any]]] = {p: [] for p in THROUGHPUT_PEERS}
    for repeat in range(args.throughput_repeats):
        for peer in THROUGHPUT_PEERS:
            db = os.path.join(setup.tmp, f"throughput-{peer}-{repeat}.db")
            agent = "tasktrace" if peer.startswith("tasktrace") else peer
            result = setup.worker(
                "throughput",
                ["--peer", peer, "--tasks", str(args.tasks)],
                setup.env(agent, db=db),
                f"throughput-{peer}-{repeat}",
            )
            rows = f", rows stored {result['rows']:,}" if "rows" in result else ""
            log(f"  {peer}: {result['rate']:,.0f} tasks/s, delivered {result['delivered']:,}{rows}")
            runs[peer].append(result)
    log(f"memory: RSS growth over {args.rss_tasks:,} tasks, one run per agent")
    rss: Dict[str, Dict[str, Any]] = {}
    for peer in PEERS:
        db = os.path.join(setup.tmp, "rss.db")
        result = setup.worker(
            "throughput",
            ["--peer", peer, "--tasks", str(args.rss_tasks)],
            setup.env(peer, db=db),
            f"rss-{peer}",
        )
        log(
            f"  {peer}: +{result['rss_growth'] / 2**20:.1f} MiB, delivered "
            f"{result['delivered']:,} at {result['rate']:,.0f} tasks/s"
        )
        rss[peer] = result
    return {"tasks": args.tasks, "runs": runs, "rss_tasks": args.rss_tasks, "rss": rss}


# -- the report -------------------------------------------------------------------------------


def machine() -> Dict[str, Any]:
    model = "unknown"
    physical: set = set()
    try:
        with open("/proc/cpuinfo") as fh:
            phys = core = None
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model == "unknown":
                    model = value
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
                elif not key and phys is not None:
                    physical.add((phys, core))
                    phys = core = None
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
            mem = f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "physical_cores": len(physical) or None,
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
    }


def source_state() -> str:
    """The commit measured, and whether tasktrace's sources differed from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {head}" + (" with uncommitted changes in src/" if dirty else "")


def _fmt_ns(ns: float) -> str:
    if ns >= 10_000:
        return f"{ns / 1000:,.1f} µs"
    if ns >= 1000:
        return f"{ns / 1000:,.2f} µs"
    return f"{ns:,.0f} ns"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or b <= 0:
        return "n/a"
    return f"{a / b:.3f}"


def analyse(data: Dict[str, Any]) -> Dict[str, Any]:
    """Turn raw results into checked figures: a figure is None where recording failed."""
    percall = data["percall"]
    rows = {(v["peer"], v["kind"]): v for v in percall["variants"]}
    bare = rows[(None, "bare")]["median_ns"]
    bare10 = rows[(None, "bare10")]["median_ns"]
    per: Dict[str, Dict[str, Any]] = {}
    for peer in PEERS:
        totals = percall["totals"].get(peer, {})
        total_ok = totals.get("tasks_delivered") == totals.get("tasks_expected")
        spans_ok = totals.get("spans_expected") is None or totals.get(
            "spans_delivered"
        ) == totals.get("spans_expected")
        per[peer] = {"total_ok": total_ok, "spans_ok": spans_ok, "totals": totals}
        for kind in ("task", "task10", "disabled"):
            v = rows[(peer, kind)]
            checked = (
                v["n_bad"] == 0
                and v["unchecked"] < len(v["samples_ns"])
                and (kind == "disabled" or (total_ok and (kind != "task10" or spans_ok)))
            )
            base = bare10 if kind == "task10" else bare
            why = None
            if not checked:
                why = (
                    f"{v['n_bad']} samples recorded the wrong count ({'; '.join(v['bad_samples'])})"
                    if v["n_bad"]
                    else "no sample could be checked"
                    if v["unchecked"] >= len(v["samples_ns"])
                    else f"delivered {totals.get('tasks_delivered')} tasks / "
                    f"{totals.get('spans_delivered')} spans, expected "
                    f"{totals.get('tasks_expected')} / {totals.get('spans_expected')}"
                )
            per[peer][kind] = {
                "median_ns": v["median_ns"] if checked else None,
                "overhead_ns": v["median_ns"] - base if checked else None,
                "why": why,
                "number": v["number"],
                "unchecked": v["unchecked"],
            }

    startup = data["startup"]
    s_bare = startup["median_ms"]["bare"]
    s: Dict[str, Dict[str, Any]] = {}
    for peer in PEERS:
        ok = startup["confirmed"].get(peer) is True
        med = startup["median_ms"][peer]
        s[peer] = {
            "median_ms": med if ok else None,
            "overhead_ms": med - s_bare if ok else None,
            "why": None if ok else str(startup["confirmed"].get(peer)),
        }

    thr = data["throughput"]
    t: Dict[str, Dict[str, Any]] = {}
    for peer in THROUGHPUT_PEERS:
        runs = thr["runs"][peer]
        # Recording is confirmed when the agent delivered the tasks: all of them, or all but
        # at most MAX_LOSS of them (OpenTelemetry's BatchSpanProcessor drops spans when its
        # queue is full; the loss is shown next to the figure). The lossless tasktrace
        # variant must also have every task's row in the file.
        ok_runs = [
            r
            for r in runs
            if r["tasks"] >= r["delivered"] >= r["tasks"] * (1 - MAX_LOSS)
            and (peer != "tasktrace-lossless" or r.get("rows") == r["tasks"])
        ]
        rss = thr["rss"].get(peer) or {"delivered": 0, "tasks": 0, "rss_growth": None, "rate": 0}
        rss_ok = rss["delivered"] == rss["tasks"] > 0
        t[peer] = {
            "rate": statistics.median(r["rate"] for r in ok_runs)
            if len(ok_runs) == len(runs)
            else None,
            "rates": [r["rate"] for r in runs],
            "delivered": [r["delivered"] for r in runs],
            "why": None
            if len(ok_runs) == len(runs)
            else f"delivered {[r['delivered'] for r in runs]} (rows {[r.get('rows') for r in runs]}) "
            f"of {runs[0]['tasks']} per run",
            "rss_growth": rss["rss_growth"] if rss_ok else None,
            "rss_rate": rss["rate"],
            "rss_why": None if rss_ok else f"delivered {rss['delivered']} of {rss['tasks']}",
            "rows": [r.get("rows") for r in runs],
            "rss_rows": rss.get("rows"),
        }

    targets = []
    tt = per["tasktrace"]["task"]["overhead_ns"]
    for peer, limit in (
        ("opentelemetry", TARGET_TASK_VS_OTEL),
        ("newrelic", TARGET_TASK_VS_NEWRELIC),
    ):
        other = per[peer]["task"]["overhead_ns"]
        ratio = tt / other if tt is not None and other else None
        targets.append(
            {
                "what": f"per task: tasktrace <= {limit} x {PEER_TITLES[peer]}",
                "ratio": ratio,
                "limit": f"<= {limit}",
                "met": None if ratio is None else ratio <= limit,
            }
        )
    peers_s = {p: s[p]["overhead_ms"] for p in PEERS[1:] if s[p]["overhead_ms"] is not None}
    fastest_s = min(peers_s, key=lambda p: peers_s[p]) if peers_s else None
    tt_s = s["tasktrace"]["overhead_ms"]
    ratio = (
        tt_s / peers_s[fastest_s]
        if fastest_s and tt_s is not None and peers_s[fastest_s] > 0
        else None
    )
    targets.append(
        {
            "what": f"start-up overhead: tasktrace <= {TARGET_STARTUP_VS_FASTEST} x the fastest peer "
            f"({PEER_TITLES[fastest_s] if fastest_s else 'none'})",
            "ratio": ratio,
            "limit": f"<= {TARGET_STARTUP_VS_FASTEST}",
            "met": None if ratio is None else ratio <= TARGET_STARTUP_VS_FASTEST,
        }
    )
    peers_t = {p: t[p]["rate"] for p in PEERS[1:] if t[p]["rate"] is not None}
    fastest_t = max(peers_t, key=lambda p: peers_t[p]) if peers_t else None
    # The target is judged on the rate at which every task's row is written: the default
    # figure is reached partly by evicting rows, which the peers did not do here.
    tt_t = t["tasktrace-lossless"]["rate"]
    ratio = tt_t / peers_t[fastest_t] if fastest_t and tt_t is not None else None
    targets.append(
        {
            "what": f"throughput, every row stored: tasktrace >= {TARGET_THROUGHPUT_VS_FASTEST} x the fastest peer "
            f"({PEER_TITLES[fastest_t] if fastest_t else 'none'})",
            "ratio": ratio,
            "limit": f">= {TARGET_THROUGHPUT_VS_FASTEST}",
            "met": None if ratio is None else ratio >= TARGET_THROUGHPUT_VS_FASTEST,
        }
    )
    return {
        "per": per,
        "startup": s,
        "throughput": t,
        "targets": targets,
        "bare_ns": bare,
        "bare10_ns": bare10,
        "bare_ms": s_bare,
    }


def render(data: Dict[str, Any], a: Dict[str, Any]) -> str:
    env = data["env"]
    versions = data["probe"]["versions"]
    per, s, t = a["per"], a["startup"], a["throughput"]
    out: List[str] = []
    w = out.append
    w("# tasktrace next to its peers: what instrumentation costs a job")
    w("")
    w(
        f"Produced by `{env['command']}` (from the repository root) on {env['date']}, in "
        f"{env['elapsed_s'] / 60:.1f} minutes. Raw samples: `results.json` (not committed)."
    )
    if env.get("rendered_by"):
        w("")
        w(
            f"(This report was re-rendered from that run's `results.json` by `{env['rendered_by']}`.)"
        )
    w("")
    m = env["machine"]
    w(
        f"- Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({m['logical_cpus']} logical"
        f"{', ' + str(m['physical_cores']) + ' physical cores' if m['physical_cores'] else ''}), "
        f"{m['memory']} RAM, {m['kernel']}"
    )
    w(
        f"- Python {data['probe']['python']} ({data['probe']['implementation']}), in `benchmarks/peers/.venv`"
    )
    w("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    w(f"- tasktrace source: {env['source']} (installed editable)")
    w(f"- Network: {env['network']}")
    w("")
    w("## Targets (ratios measured in this run)")
    w("")
    w("| target | measured | limit | met |")
    w("|---|---:|---:|:---:|")
    for tg in a["targets"]:
        met = "n/a" if tg["met"] is None else ("yes" if tg["met"] else "**no**")
        measured = "n/a" if tg["ratio"] is None else f"{tg['ratio']:.3f}"
        w(f"| {tg['what']} | {measured} | {tg['limit']} | {met} |")
    w("")
    pc = data["percall"]
    w(
        f"## Per call (median of {pc['repeats']} samples of ~{pc['sample_ms']:g} ms each, all variants "
        "interleaved round-robin in one process)"
    )
    w("")
    w(
        "Each sample starts after an untimed `gc.collect()`: the agents share one heap, and a full "
        "collection runs in whichever sample allocates past the collector's threshold, not in the "
        "one that left the garbage (ddtrace's writer keeps every trace it cannot send; its full "
        "collections took 15-30 ms). A sample still pays for the collections its own allocations set off."
    )
    w("")
    w(
        f"Overhead = the variant's time per call minus the bare function's ({_fmt_ns(a['bare_ns'])}; "
        f"for the nested case, a bare function calling 10 plain functions: {_fmt_ns(a['bare10_ns'])})."
    )
    w("")
    head = "| case | " + " | ".join(PEER_TITLES[p] for p in PEERS) + " |"
    w(head)
    w("|---|" + "---:|" * len(PEERS))
    labels = {
        "task": "task (trivial function)",
        "task10": "task + 10 nested function traces / child spans",
        "disabled": "task, agent disabled",
    }
    notes: List[str] = []
    for kind in ("task", "task10", "disabled"):
        cells = []
        for p in PEERS:
            cell = per[p][kind]
            if cell["overhead_ns"] is None:
                cells.append("not shown¹")
                notes.append(f"{PEER_TITLES[p]}, {labels[kind]}: {cell['why']}")
            else:
                cells.append(_fmt_ns(cell["overhead_ns"]))
        w(f"| {labels[kind]} | " + " | ".join(cells) + " |")
    w("")
    w("Ratio tasktrace / peer (overheads; below 1 means tasktrace costs less):")
    w("")
    w("| case | " + " | ".join(PEER_TITLES[p] for p in PEERS[1:]) + " |")
    w("|---|" + "---:|" * (len(PEERS) - 1))
    for kind in ("task", "task10", "disabled"):
        mine = per["tasktrace"][kind]["overhead_ns"]
        w(
            f"| {labels[kind]} | "
            + " | ".join(_ratio(mine, per[p][kind]["overhead_ns"]) for p in PEERS[1:])
            + " |"
        )
    w("")
    w(
        "What each variant is: tasktrace `@tasktrace.background_task()` and `@tasktrace.function_trace()` "
        "with the default recorder and the sqlite reporter (`TASKTRACE_DB` in a temporary directory); "
        "disabled: `STATE.enabled = False` (what `TASKTRACE_ENABLED=false` sets). New Relic "
        "`@newrelic.agent.background_task()` / `@function_trace()`, agent in developer mode "
        "(`initialize(cfg)`, `register_application(timeout=10)`); disabled: the global setting "
        "`enabled = False` that `initialize()` leaves without monitor or developer mode. "
        "OpenTelemetry `tracer.start_as_current_span()` from an SDK `TracerProvider` with a "
        "`BatchSpanProcessor` and a counting no-op exporter; disabled: the API's "
        "`NoOpTracerProvider`. ddtrace `tracer.trace()`, its default writer aimed at a closed "
        "port on 127.0.0.1, a `TraceFilter` counting; disabled: `tracer.enabled = False`."
    )
    w("")
    w(f"## Start-up (median of {data['startup']['repeats']} runs of `python -c pass`, interleaved)")
    w("")
    w("| command | median | overhead | tasktrace / this |")
    w("|---|---:|---:|---:|")
    w(f"| bare `python -c pass` | {a['bare_ms']:.1f} ms | — | |")
    names = {
        "tasktrace": "`tasktrace-admin run-program` (5 targets)",
        "newrelic": "`newrelic-admin run-program` (developer mode)",
        "opentelemetry": "`opentelemetry-instrument` (exporters none)",
        "ddtrace": "`ddtrace-run` (agent URL a closed port)",
    }
    for p in PEERS:
        if s[p]["median_ms"] is None:
            w(f"| {names[p]} | not shown¹ | | |")
            notes.append(f"start-up, {PEER_TITLES[p]}: agent not confirmed loaded: {s[p]['why']}")
        else:
            ratio = (
                ""
                if p == "tasktrace"
                else _ratio(s["tasktrace"]["overhead_ms"], s[p]["overhead_ms"])
            )
            w(
                f"| {names[p]} | {s[p]['median_ms']:.1f} ms | {s[p]['overhead_ms']:.1f} ms | {ratio} |"
            )
    w("")
    w(
        "Each launcher was first run with a probe instead of `pass`, which confirmed its agent "
        "was loaded and on (tasktrace initialized; New Relic's settings enabled; the SDK tracer "
        "provider installed; ddtrace's preload imported)."
    )
    w("")
    thr = data["throughput"]
    w(
        f"## Throughput and memory (one thread; a fresh process per run; median of "
        f"{len(thr['runs']['tasktrace'])} runs of {thr['tasks']:,} tasks, interleaved)"
    )
    w("")
    w(
        "| agent | tasks/s | tasktrace (every row stored) / this | rows stored per run | "
        f"RSS growth after {thr['rss_tasks']:,} tasks | tasks/s in that run |"
    )
    w("|---|---:|---:|---|---:|---:|")
    mine = t["tasktrace-lossless"]["rate"]
    for p in THROUGHPUT_PEERS:
        rate = t[p]["rate"]
        if rate is None:
            notes.append(f"throughput, {PEER_TITLES[p]}: {t[p]['why']}")
        has_rss = p in thr["rss"]
        if has_rss and t[p]["rss_growth"] is None:
            notes.append(f"memory, {PEER_TITLES[p]}: {t[p]['rss_why']}")
        ratio = "" if p.startswith("tasktrace") else _ratio(mine, rate)
        if p.startswith("tasktrace"):
            rows = ", ".join(f"{r:,}" for r in t[p]["rows"]) + f" of {thr['tasks']:,}"
        elif all(d == thr["tasks"] for d in t[p]["delivered"]):
            rows = "every task delivered"
        else:
            rows = "delivered " + ", ".join(f"{d:,}" for d in t[p]["delivered"])
        if not has_rss:
            rss, rss_rate = "(not measured)", ""
        elif t[p]["rss_growth"] is None:
            rss, rss_rate = "not shown¹", ""
        else:
            rss = f"{t[p]['rss_growth'] / 2**20:.1f} MiB"
            if t[p].get("rss_rows") is not None:
                rss += f" ({t[p]['rss_rows']:,} rows stored)"
            rss_rate = f"{t[p]['rss_rate']:,.0f}"
        w(
            f"| {PEER_TITLES[p]} | {'not shown¹' if rate is None else f'{rate:,.0f}'} | {ratio} | "
            f"{rows} | {rss} | {rss_rate} |"
        )
    w("")
    w(
        "tasktrace counts every task in its exact metrics either way; with its default "
        "10,000-record buffer, rows the harvest thread cannot write in time are evicted (counted "
        "in its `drops` table), so the default figure is partly bought by storing fewer rows. "
        "'Every row stored' sets `buffer_size` above the run's task count (via "
        "`tasktrace.initialize()` and a config file), so the timed final flush writes every row; "
        "the throughput target is judged on that figure. "
        "The timed region runs from the first call to the end of delivery: tasktrace "
        "`tasktrace.flush()` (rows written to SQLite), OpenTelemetry `force_flush()`, New Relic "
        "a default and a flexible harvest to its developer-mode collector. ddtrace encodes each "
        "trace on the calling thread as it finishes; its send to the closed port is not timed "
        "(it would time retries against a port that refuses). RSS growth is measured from after "
        "a 2,000-task warm-up to after delivery; ddtrace's includes whatever its writer holds "
        "while its sends to the closed port fail, so against a live agent it may differ."
    )
    w("")
    w("## Recording, checked")
    w("")
    w(
        "A figure is shown only if its agent recorded what it was given; each per-call sample is "
        "checked by itself (disabled: nothing recorded), and the totals at the end."
    )
    w("")
    w(
        "| agent | how counted | per-call run: tasks delivered / made | spans or traces delivered / made | throughput runs: delivered |"
    )
    w("|---|---|---:|---:|---|")
    for p in PEERS:
        tot = per[p]["totals"]
        spans = (
            "—"
            if tot.get("spans_expected") is None
            else f"{tot.get('spans_delivered'):,} / {tot.get('spans_expected'):,}"
        )
        unchecked = sum(per[p][k]["unchecked"] for k in ("task", "task10", "disabled"))
        extra = (
            f" ({unchecked} samples spanning a periodic harvest were not checked)"
            if unchecked
            else ""
        )
        w(
            f"| {PEER_TITLES[p]} | {tot.get('how_counted')}{extra} | "
            f"{tot.get('tasks_delivered'):,} / {tot.get('tasks_expected'):,} | {spans} | "
            f"{', '.join(f'{d:,}' for d in t[p]['delivered'])} of {thr['tasks']:,} each |"
        )
    if notes:
        w("")
        w("¹ Not shown, because recording could not be confirmed:")
        w("")
        for note in notes:
            w(f"- {note}")
    w("")
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------------


def parse(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats and tasks: a smoke run")
    parser.add_argument("--venv", default=os.path.join(HERE, ".venv"))
    parser.add_argument("--reinstall", action="store_true", help="recreate the peers' virtualenv")
    parser.add_argument("--repeats", type=int, help="per-call samples per variant (default 31)")
    parser.add_argument(
        "--sample-ms", type=float, help="length of one per-call sample (default 20)"
    )
    parser.add_argument("--startup-repeats", type=int, help="runs per launcher (default 30)")
    parser.add_argument("--tasks", type=int, help="tasks per throughput run (default 300,000)")
    parser.add_argument(
        "--throughput-repeats", type=int, help="throughput runs per agent (default 3)"
    )
    parser.add_argument(
        "--rss-tasks", type=int, help="tasks for the RSS figure (default 1,000,000)"
    )
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument(
        "--no-netns", action="store_true", help="do not unshare the network namespace"
    )
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--render", metavar="RESULTS_JSON", help="only rewrite the report from a results.json"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "repeats": 9 if quick else 31,
        "sample_ms": 8.0 if quick else 20.0,
        "startup_repeats": 8 if quick else 30,
        "tasks": 30_000 if quick else 300_000,
        "throughput_repeats": 1 if quick else 3,
        "rss_tasks": 100_000 if quick else 1_000_000,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: List[str]) -> int:
    args = parse(argv)
    if args.render:
        with open(args.render) as fh:
            data = json.load(fh)["data"]
        data["env"]["rendered_by"] = shlex.join(
            ["python", os.path.relpath(os.path.abspath(__file__), REPO), *argv]
        )
        analysis = analyse(data)
        with open(args.output, "w") as fh:
            fh.write(render(data, analysis))
        log(f"wrote {args.output} from {args.render}")
        return 0
    command = os.environ.get("PEERS_BENCH_COMMAND") or shlex.join(
        ["python", os.path.relpath(os.path.abspath(__file__), REPO), *argv]
    )
    if not args.in_netns:
        ensure_venv(args.venv, args.reinstall)
        if not args.no_netns and can_unshare():
            log("entering a private network namespace (loopback only)")
            env = dict(os.environ, PEERS_BENCH_COMMAND=command)
            return subprocess.run(
                [
                    "unshare",
                    "-n",
                    "--",
                    sys.executable,
                    os.path.abspath(__file__),
                    *argv,
                    "--in-netns",
                ],
                env=env,
            ).returncode
        log(
            "no private network namespace: relying on loopback-only configuration and the audit hook"
        )
    else:
        bring_loopback_up()
    network = (
        "measured in a private network namespace with only a loopback interface (`unshare -n`)"
        if only_loopback()
        else "host network; every agent configured for loopback or nothing, audit hook refusing other addresses"
    )
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tasktrace-peers-") as tmp:
        setup = Setup(tmp, args.venv)
        probe = setup.worker("probe", [], setup.env(), "probe")
        data: Dict[str, Any] = {"probe": probe}
        data["percall"] = run_percall(setup, args)
        data["startup"] = run_startup(setup, args)
        data["throughput"] = run_throughput(setup, args)
    data["env"] = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed_s": time.time() - started,
        "machine": machine(),
        "network": network,
        "source": source_state(),
        "args": vars(args),
    }
    analysis = analyse(data)
    text = render(data, analysis)
    with open(args.output, "w") as fh:
        fh.write(text)
    with open(os.path.join(os.path.dirname(args.output), "results.json"), "w") as fh:
        json.dump({"data": data, "analysis": analysis}, fh, indent=1, default=str)
    sys.stderr.write(text + "\n")
    log(f"wrote {args.output}")
    for target in analysis["targets"]:
        state = "n/a" if target["met"] is None else ("met" if target["met"] else "MISSED")
        log(f"target {target['what']}: {target['ratio']!r} -> {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
