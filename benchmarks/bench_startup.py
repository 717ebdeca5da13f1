"""Whole-process start-up cost of the launcher and bootstrap.

Run: ``python benchmarks/bench_startup.py [--repeats 40]``

Compares, interleaved round-robin, the median wall time of:

* ``python -c pass`` (the bare interpreter);
* ``tasktrace-admin run-program python -c pass`` with a config of 20 targets whose modules
  the program never imports (what every worker process pays to be instrumented);
* the bootstrap alone: ``python -c pass`` with the bootstrap on ``PYTHONPATH`` (no launcher);
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
from typing import Dict, List

CONFIG = "\n".join(
    f'[[background_task]]\nfunction = "never_imported_{i}.jobs:run_{i}"\n' for i in range(20)
)


def _run(cmd: List[str], env: Dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args(argv)

    from tasktrace.admin.run import build_environment

    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "tasktrace.toml")
        with open(config, "w") as handle:
            handle.write(CONFIG)
        env = dict(os.environ)
        env.pop("TASKTRACE_CONFIG_FILE", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        boot_env = build_environment(env, config=config, app_name="bench", environment=None)
        admin = [sys.executable, "-m", "tasktrace", "run-program", "--config", config]
        variants = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "bootstrap only (PYTHONPATH)": ([sys.executable, "-c", "pass"], boot_env),
            "tasktrace-admin run-program": ([*admin, sys.executable, "-c", "pass"], env),
        }
        script = os.path.join(os.path.dirname(sys.executable), "tasktrace-admin")
        if os.path.isfile(script):
            variants["tasktrace-admin script"] = (
                [script, "run-program", "--config", config, sys.executable, "-c", "pass"],
                env,
            )
        samples: Dict[str, List[float]] = {k: [] for k in variants}
        for cmd, e in variants.values():  # warm the page cache and .pyc files
            _run(cmd, e)
        for _ in range(args.repeats):
            for label, (cmd, e) in variants.items():
                samples[label].append(_run(cmd, e))
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    base = med["python -c pass"]
    print(f"python {sys.version.split()[0]}; median of {args.repeats} runs, milliseconds")
    print(f"{'variant':32s} {'ms':>8s} {'added':>8s}")
    for label, value in med.items():
        print(f"{label:32s} {value:8.1f} {value - base:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
