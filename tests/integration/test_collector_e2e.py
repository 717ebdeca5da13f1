"""A real RQ worker exporting over OTLP/HTTP to a real collector (rotel).

Each RQ work horse sends its job's span from inside ``os._exit``; the collector's detailed
debug log shows what it received: the resource's ``service.name`` and the span names.
"""

from __future__ import annotations

import re
from typing import List

import pytest
from _launcher import Launcher
from _services import Rotel, copy_example, enqueue, fresh_db, run_worker, wait_until

pytest.importorskip("rq", reason="rq is not installed (it is in the test extra)")


def _span_names(log: str) -> List[str]:
    """The names of the job spans in rotel's detailed debug log."""
    return re.findall(r"^\s*Name\s*:\s*(rq_jobs:\S+)\s*$", log, flags=re.MULTILINE)


def test_rq_jobs_arrive_at_rotel(
    launcher: Launcher,
    redis_url: str,
    rotel: Rotel,
) -> None:
    """Every job's span reaches the collector once, under the app name from the environment."""
    copy_example("rq_worker", launcher.cwd)
    url = fresh_db(redis_url)
    enqueue(launcher, url)
    result = run_worker(
        launcher,
        url,
        env={
            "TASKTRACE_REPORTER": "otlp",
            "TASKTRACE_OTLP_ENDPOINT": rotel.endpoint,
            "TASKTRACE_APP_NAME": "rq-e2e",
        },
    )
    # The work horses sent their spans before exiting; rotel may still be writing its log.
    wait_until(lambda: len(_span_names(rotel.log())) >= 10, 10)
    log = rotel.log()
    spans = _span_names(log)
    expected = ["rq_jobs:fail_sometimes"] * 5 + ["rq_jobs:resize_image"] * 5
    assert sorted(spans) == expected, f"{log[-3000:]}\n--- worker:\n{result.stderr[-3000:]}"
    assert "service.name: Str(rq-e2e)" in log
    assert "service.name: Str(rq-images)" not in log  # the variable beats the file
    assert log.count("STATUS_CODE_ERROR") == 2  # fail_sometimes(0) and fail_sometimes(3)
    assert "dropped" not in result.stderr
