"""End-to-end: real programs run under ``tasktrace-admin run-program`` with a config."""

from __future__ import annotations

import os
import sys

from _launcher import Launcher

CONFIG = """
app_name = "from-file"
harvest_interval = 0.2

[[background_task]]
function = "jobs:send_invoices"
group = "Cron"

[[background_task]]
function = "jobs:Exporter.run"

[[function_trace]]
function = "jobs:render"
"""

JOBS = """
def render(i):
    return f"invoice {i}"

def send_invoices(n):
    return [render(i) for i in range(n)]

class Exporter:
    def run(self, fail=False):
        if fail:
            raise ValueError("export failed")
        return "exported"
"""

SCRIPT = """
import os, sys
import jobs
print("pid", os.getpid())
jobs.send_invoices(3)
jobs.Exporter().run()
try:
    jobs.Exporter().run(fail=True)
except ValueError:
    pass
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def _setup(launcher: Launcher) -> None:
    launcher.write("tasktrace.toml", CONFIG)
    launcher.write("jobs.py", JOBS)
    launcher.write("script.py", SCRIPT)


def test_script_runs_instrumented_with_config(launcher: Launcher) -> None:
    """Listed functions become transactions with their group, traces and errors."""
    _setup(launcher)
    result = launcher.admin("run-program", "python", "script.py")
    assert result.returncode == 0, result.stderr
    records = launcher.records()
    by_name = {}
    for record in records:
        by_name.setdefault(record["name"], []).append(record)
    assert set(by_name) == {"jobs:send_invoices", "jobs:Exporter.run"}
    (send,) = by_name["jobs:send_invoices"]
    assert send["group"] == "Cron"
    assert send["app"] == "from-file"
    assert [s["name"] for s in send["segments"]] == ["jobs:render"] * 3
    errors = [r for r in by_name["jobs:Exporter.run"] if r["errors"]]
    assert len(errors) == 1
    assert errors[0]["errors"][0]["type"] == "builtins:ValueError"
    assert result.stdout.startswith("pid ")  # the program's stdout is its own


def test_app_name_from_environment_variable(launcher: Launcher) -> None:
    """TASKTRACE_APP_NAME overrides the file's app_name."""
    _setup(launcher)
    result = launcher.admin(
        "run-program", "python", "script.py", env={"TASKTRACE_APP_NAME": "billing"}
    )
    assert result.returncode == 0, result.stderr
    assert {r["app"] for r in launcher.records()} == {"billing"}


def test_app_name_flag_wins_over_variable(launcher: Launcher) -> None:
    """--app-name beats TASKTRACE_APP_NAME."""
    _setup(launcher)
    result = launcher.admin(
        "run-program",
        "--app-name",
        "flagged",
        "python",
        "script.py",
        env={"TASKTRACE_APP_NAME": "billing"},
    )
    assert result.returncode == 0, result.stderr
    assert {r["app"] for r in launcher.records()} == {"flagged"}


def test_exit_status_and_pid_are_kept(launcher: Launcher) -> None:
    """run-program execs: the program keeps the launcher's PID and its own exit status."""
    _setup(launcher)
    code = "import os, sys; print(os.getpid()); sys.exit(7)"
    launcher.write("pid.py", code)
    wrapper = (
        "import os, subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'tasktrace', 'run-program', "
        "'python', 'pid.py'], stdout=subprocess.PIPE, text=True)\n"
        "out, _ = p.communicate()\n"
        "print(p.pid, out.strip(), p.returncode)\n"
    )
    launcher.write("wrapper.py", wrapper)
    result = launcher.admin("run-python", "wrapper.py")  # any runner will do
    launched_pid, program_pid, status = result.stdout.split()
    assert launched_pid == program_pid
    assert status == "7"
    result = launcher.admin("run-program", "python", "script.py", "5")
    assert result.returncode == 5


def test_child_python_processes_are_instrumented(launcher: Launcher) -> None:
    """A python subprocess started by the program is instrumented too."""
    _setup(launcher)
    launcher.write(
        "parent.py",
        "import subprocess, sys\nsubprocess.run([sys.executable, 'script.py'], check=True)\n",
    )
    result = launcher.admin("run-program", "python", "parent.py")
    assert result.returncode == 0, result.stderr
    records = launcher.records()
    assert {r["name"] for r in records} == {"jobs:send_invoices", "jobs:Exporter.run"}
    assert len({r["pid"] for r in records}) == 1


def test_user_sitecustomize_still_runs(launcher: Launcher) -> None:
    """The program's own sitecustomize on PYTHONPATH is chained, not replaced."""
    _setup(launcher)
    launcher.write("site_dir/sitecustomize.py", "import os\nos.environ['USER_SITE_RAN'] = '1'\n")
    launcher.write(
        "check.py",
        "import os, jobs\nprint(os.environ.get('USER_SITE_RAN'))\njobs.send_invoices(1)\n",
    )
    result = launcher.admin(
        "run-program", "python", "check.py", env={"PYTHONPATH": str(launcher.cwd / "site_dir")}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert [r["name"] for r in launcher.records()] == ["jobs:send_invoices"]


def test_python_dash_m(launcher: Launcher) -> None:
    """python -m pkg.mod works under the launcher and its targets are applied."""
    _setup(launcher)
    launcher.write("pkg/__init__.py", "")
    launcher.write("pkg/main.py", "import jobs\nprint(jobs.send_invoices(2))\n")
    result = launcher.admin("run-program", "python", "-m", "pkg.main")
    assert result.returncode == 0, result.stderr
    assert "invoice 1" in result.stdout
    assert [r["name"] for r in launcher.records()] == ["jobs:send_invoices"]


def test_main_module_targets(launcher: Launcher) -> None:
    """A __main__:func target applies to the script run by python script.py and by -m."""
    launcher.write(
        "tasktrace.toml",
        '[[background_task]]\nfunction = "__main__:main"\n',
    )
    body = "def main():\n    return 42\n\nif __name__ == '__main__':\n    print(main())\n"
    launcher.write("mainscript.py", body)
    launcher.write("mpkg/__init__.py", "")
    launcher.write("mpkg/run.py", body)
    for argv in (["mainscript.py"], ["-m", "mpkg.run"]):
        launcher.out.unlink(missing_ok=True)
        result = launcher.admin("run-program", "python", *argv)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "42"
        assert [r["name"] for r in launcher.records()] == ["__main__:main"], argv


def test_target_naming_the_script_itself_is_warned(launcher: Launcher) -> None:
    """python job.py with a target job:work: job is never imported (the file runs as
    __main__), so the target would record nothing; one stderr line says so and names the
    __main__ target to use. Not said when job is an imported module."""
    launcher.write(
        "tasktrace.toml",
        '[[background_task]]\nfunction = "job:work"\n\n'
        '[[background_task]]\nfunction = "pkg.job:work"\n',
    )
    body = "def work():\n    return 7\n\nif __name__ == '__main__':\n    print(work())\n"
    launcher.write("job.py", body)
    launcher.write("pkg/__init__.py", "")
    launcher.write("pkg/job.py", body)
    # python pkg/job.py puts pkg/ first on sys.path: "import job" would be that file too.
    for argv, targets in (
        (["job.py"], ["job:work"]),
        (["-m", "job"], ["job:work"]),
        (["pkg/job.py"], ["job:work", "pkg.job:work"]),
        (["-m", "pkg.job"], ["pkg.job:work"]),
    ):
        launcher.out.unlink(missing_ok=True)
        result = launcher.admin("run-program", "python", *argv)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "7\n", argv
        if sys.version_info < (3, 10) and argv[0] == "-m":
            continue  # no sys.orig_argv: the -m module's name is not known at start-up
        warned = [line for line in result.stderr.splitlines() if "is the script itself" in line]
        assert len(warned) == len(targets), (argv, result.stderr)
        for line, target in zip(warned, targets):
            assert f"{target!r}: " in line and "'__main__:work'" in line, warned
        assert launcher.records() == [], argv
    launcher.write("main.py", "import job\nprint(job.work())\n")
    launcher.out.unlink(missing_ok=True)
    result = launcher.admin("run-program", "python", "main.py")
    assert result.returncode == 0, result.stderr
    assert "is the script itself" not in result.stderr
    assert [r["name"] for r in launcher.records()] == ["job:work"]


def test_bad_config_runs_program_uninstrumented(launcher: Launcher) -> None:
    """A broken config is one line on stderr; the program still runs and exits normally."""
    launcher.write("tasktrace.toml", "app_name = [broken\n")
    launcher.write("ok.py", "print('still ran')\n")
    result = launcher.admin("run-program", "python", "ok.py")
    assert result.returncode == 0
    assert result.stdout == "still ran\n"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "tasktrace.toml" in lines[0]


def test_strict_mode_makes_bad_config_fatal(launcher: Launcher) -> None:
    """TASKTRACE_STRICT=1: a broken config stops the program before it starts."""
    launcher.write("tasktrace.toml", "app_nam = 'typo'\n")
    launcher.write("ok.py", "print('should not run')\n")
    result = launcher.admin("run-program", "python", "ok.py", env={"TASKTRACE_STRICT": "1"})
    assert result.returncode != 0
    assert "should not run" not in result.stdout
    assert "app_name" in result.stderr  # the did-you-mean


def test_program_not_found(launcher: Launcher) -> None:
    """A missing program is a clear error with exit status 127."""
    result = launcher.admin("run-program", "no-such-program-xyz")
    assert result.returncode == 127
    assert "program not found: no-such-program-xyz" in result.stderr


def test_no_program_prints_usage(launcher: Launcher) -> None:
    """run-program without a program prints usage and exits 2."""
    result = launcher.admin("run-program")
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_double_dash_and_verbatim_arguments(launcher: Launcher) -> None:
    """Arguments after -- reach the program unchanged, options included."""
    launcher.write("args.py", "import sys\nprint(sys.argv[1:])\n")
    result = launcher.admin("run-program", "--", "python", "args.py", "--config", "x", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['--config', 'x', '-v']"


def test_isolated_python_gets_a_warning(launcher: Launcher) -> None:
    """python -I would skip the bootstrap: the launcher says so on stderr."""
    result = launcher.admin("run-program", "python", "-I", "-c", "pass")
    assert result.returncode == 0
    assert "-I" in result.stderr and "not be instrumented" in result.stderr


def test_disabled_agent_patches_nothing(launcher: Launcher) -> None:
    """TASKTRACE_ENABLED=false: the program runs and nothing is recorded."""
    _setup(launcher)
    result = launcher.admin(
        "run-program", "python", "script.py", env={"TASKTRACE_ENABLED": "false"}
    )
    assert result.returncode == 0, result.stderr
    assert launcher.records() == []


def test_stdout_is_untouched(launcher: Launcher) -> None:
    """Under the launcher the program's stdout holds exactly what the program printed."""
    _setup(launcher)
    launcher.write("quiet.py", "import jobs\njobs.send_invoices(2)\n")
    result = launcher.admin(
        "run-program", "python", "quiet.py", env={"TASKTRACE_LOG_LEVEL": "debug"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_uninstalled_checkout_launcher(launcher: Launcher) -> None:
    """bin/tasktrace-admin runs from the source tree."""
    _setup(launcher)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            os.path.join(root, "bin", "tasktrace-admin"),
            "run-program",
            "python",
            "script.py",
        ],
        cwd=launcher.cwd,
        env=launcher.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(launcher.records()) == 3


def test_bad_variable_is_one_stderr_line(launcher: Launcher) -> None:
    """A bad TASKTRACE_* variable under the launcher is reported once, in one line."""
    launcher.write("ok.py", "print('ran')\n")
    result = launcher.admin("run-program", "python", "ok.py", env={"TASKTRACE_ENABLED": "maybe"})
    assert result.returncode == 0
    assert result.stdout == "ran\n"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "TASKTRACE_ENABLED" in lines[0]
