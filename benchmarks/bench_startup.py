"""Whole-process start-up cost of the launcher and bootstrap.

Run: ``python benchmarks/bench_startup.py [--repeats 40]``

Compares, interleaved round-robin, the median wall time of:

* ``python -c pass`` (the bare interpreter);
* ``tasktrace-admin run-program python -c pass`` with a config of 20 targets whose modules
  the program never imports (what every worker process pays to be instrumented);
* the bootstrap alone: ``python -c pass`` with the bootstrap on ``PYTHONPATH`` (no launcher),
  with that config and with configs of 5 and 5,000 targets (``--targets`` changes the
  sizes), to show how the target table's cost grows;
* the ``tasktrace-admin`` console script, when it is installed next to the interpreter.

``PYTHONDONTWRITEBYTECODE`` is removed from the children's environment: with it set, every
run would compile tasktrace's modules again, which no installed program pays.

Target: the launcher plus bootstrap add <= 40 ms to the bare interpreter on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple


def _config(count: int) -> str:
    """A config of ``count`` targets whose modules the program never imports."""
    return "\n".join(
        f'[[background_task]]\nfunction = "never_imported_{i}.jobs:run_{i}"\n' for i in range(count)
    )


CONFIG = _config(20)


def _run(cmd: List[str], env: Dict[str, str]) -> Tuple[float, float]:
    """Wall time and CPU time (user + system, from the child's rusage) of one run.

    The CPU time hardly moves when other processes load the machine, the wall time does:
    on a busy machine compare the CPU column.
    """
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, cmd)
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument(
        "--targets",
        default="5,5000",
        help="comma-separated config sizes for the bootstrap-only runs (default 5,5000)",
    )
    parser.add_argument(
        "--only-targets", action="store_true", help="skip the launcher and script variants"
    )
    parser.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also run the sized bootstrap variants with the tasktrace package in DIR (an "
        "exported older checkout's src/, e.g. from 'git archive main src'), interleaved",
    )
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.targets.split(",") if size.strip()]

    from tasktrace.admin.run import build_environment

    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "tasktrace.toml")
        with open(config, "w") as handle:
            handle.write(CONFIG)
        env = dict(os.environ)
        env.pop("TASKTRACE_CONFIG_FILE", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # A cache of parsed configs, if one is written, stays in this run's directory.
        env["XDG_CACHE_HOME"] = os.path.join(tmp, "cache")
        boot_env = build_environment(env, config=config, app_name="bench", environment=None)
        admin = [sys.executable, "-m", "tasktrace", "run-program", "--config", config]
        variants = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "bootstrap only (PYTHONPATH)": ([sys.executable, "-c", "pass"], boot_env),
            "tasktrace-admin run-program": ([*admin, sys.executable, "-c", "pass"], env),
        }
        for size in sizes:
            sized = os.path.join(tmp, f"targets-{size}.toml")
            with open(sized, "w") as handle:
                handle.write(_config(size))
            sized_env = build_environment(env, config=sized, app_name="bench", environment=None)
            variants[f"bootstrap, {size} targets"] = ([sys.executable, "-c", "pass"], sized_env)
            if args.baseline_src:
                base_src = os.path.abspath(args.baseline_src)
                old_env = dict(sized_env)
                old_env["PYTHONPATH"] = os.pathsep.join(
                    [os.path.join(base_src, "tasktrace", "bootstrap"), base_src]
                )
                variants[f"baseline, {size} targets"] = ([sys.executable, "-c", "pass"], old_env)
        if args.only_targets:
            del variants["tasktrace-admin run-program"], variants["bootstrap only (PYTHONPATH)"]
        script = os.path.join(os.path.dirname(sys.executable), "tasktrace-admin")
        if os.path.isfile(script) and not args.only_targets:
            variants["tasktrace-admin script"] = (
                [script, "run-program", "--config", config, sys.executable, "-c", "pass"],
                env,
            )
        samples: Dict[str, List[float]] = {k: [] for k in variants}
        cpu: Dict[str, List[float]] = {k: [] for k in variants}
        for cmd, e in variants.values():  # warm the page cache and .pyc files
            _run(cmd, e)
        for _ in range(args.repeats):
            for label, (cmd, e) in variants.items():
                wall, used = _run(cmd, e)
                samples[label].append(wall)
                cpu[label].append(used)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    med_cpu = {k: statistics.median(v) * 1000 for k, v in cpu.items()}
    base, base_cpu = med["python -c pass"], med_cpu["python -c pass"]
    print(f"python {sys.version.split()[0]}; median of {args.repeats} runs, milliseconds")
    print(
        f"{'variant':32s} {'ms':>8s} {'added':>8s} {'p25':>8s} {'p75':>8s} "
        f"{'cpu ms':>8s} {'added':>8s}"
    )
    for label, value in med.items():
        quartiles = statistics.quantiles(samples[label], n=4)
        low, high = quartiles[0] * 1000, quartiles[2] * 1000
        used = med_cpu[label]
        print(
            f"{label:32s} {value:8.1f} {value - base:8.1f} {low:8.1f} {high:8.1f} "
            f"{used:8.1f} {used - base_cpu:8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
