"""Tests for tasktrace._config_cache: large configs parse once per content, privately."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tasktrace import _compat, _config_cache, config
from tasktrace.config import load


def _big_config(count: int = 1200, app: str = "big") -> str:
    lines = [f'app_name = "{app}"']
    lines += [f'[[background_task]]\nfunction = "mod_{i}.jobs:run_{i}"' for i in range(count)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def cache_home(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> List[int]:
    """Counts the TOML parses load() does."""
    calls: List[int] = []
    real = _compat.load_toml

    def counting(text: str) -> Dict[str, Any]:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(_compat, "load_toml", counting)
    return calls


def test_threshold_matches_the_module() -> None:
    """config's copy of the size threshold is the cache's own."""
    assert config._CACHE_MIN_SIZE == _config_cache.MIN_SIZE


def test_large_config_is_parsed_once_and_cached_privately(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    """A large config is parsed once; the next load gives equal settings from a 0600
    entry in a 0700 $XDG_CACHE_HOME/tasktrace."""
    path = tmp_path / "tasktrace.toml"
    path.write_text(_big_config())
    env = {"XDG_CACHE_HOME": str(cache_home)}
    first = load(path, env=env)
    second = load(path, env=env)
    assert len(parses) == 1
    assert first == second and len(second.background_tasks) == 1200
    directory = cache_home / "tasktrace"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (entry,) = directory.iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def test_an_edit_is_seen_even_with_the_same_size_and_time(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    """The entry is used only for the very same content (not path, size and mtime)."""
    path = tmp_path / "tasktrace.toml"
    path.write_text(_big_config(app="aaa"))
    env = {"XDG_CACHE_HOME": str(cache_home)}
    assert load(path, env=env).app_name == "aaa"
    times = os.stat(path)
    path.write_text(_big_config(app="bbb"))
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert load(path, env=env).app_name == "bbb"
    assert len(parses) == 2


def test_entries_others_could_write_are_ignored(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    """An entry or directory writable by group or others is not trusted."""
    path = tmp_path / "tasktrace.toml"
    path.write_text(_big_config())
    env = {"XDG_CACHE_HOME": str(cache_home)}
    load(path, env=env)
    (entry,) = (cache_home / "tasktrace").iterdir()
    entry.chmod(0o666)
    load(path, env=env)
    assert len(parses) == 2
    entry.chmod(0o600)
    (cache_home / "tasktrace").chmod(0o777)
    load(path, env=env)
    assert len(parses) == 3


def test_small_configs_and_dates_are_not_cached(tmp_path: Path, cache_home: Path) -> None:
    """A small config leaves no cache; a large one marshal cannot hold (a TOML date)
    still loads, uncached."""
    env = {"XDG_CACHE_HOME": str(cache_home)}
    small = tmp_path / "small.toml"
    small.write_text('[[background_task]]\nfunction = "m:f"\n')
    load(small, env=env)
    assert not cache_home.exists()
    dated = tmp_path / "dated.toml"
    dated.write_text(
        "# built = 2024-01-01\n" + _big_config().replace("\n[[", "\nx = 1979-05-27\n[[", 1)
    )
    with pytest.raises(config.ConfigurationError, match="x"):
        load(dated, env=env)
    assert not any((cache_home / "tasktrace").glob("*.marshal"))


def test_corrupt_or_unwritable_cache_never_fails_the_load(tmp_path: Path, cache_home: Path) -> None:
    """A garbage entry or a cache path that is a file is ignored: the config still loads."""
    path = tmp_path / "tasktrace.toml"
    path.write_text(_big_config())
    env = {"XDG_CACHE_HOME": str(cache_home)}
    load(path, env=env)
    (entry,) = (cache_home / "tasktrace").iterdir()
    entry.write_bytes(b"\x00garbage")
    assert len(load(path, env=env).background_tasks) == 1200
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a directory")
    assert len(load(path, env={"XDG_CACHE_HOME": str(blocked)}).background_tasks) == 1200


def test_second_start_with_a_large_config_skips_the_toml_parser(tmp_path: Path) -> None:
    """Under the bootstrap, a large config's second start does not even import tomllib."""
    path = tmp_path / "tasktrace.toml"
    path.write_text(_big_config(5000))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    from tasktrace.bootstrap import BOOTSTRAP_DIR

    src = str(Path(BOOTSTRAP_DIR).parents[1])
    env.update(
        PYTHONPATH=os.pathsep.join([BOOTSTRAP_DIR, src]),
        TASKTRACE_CONFIG_FILE=str(path),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    code = (
        "import json, sys; print(json.dumps([m in sys.modules for m in "
        "('tasktrace.hooks', 'tomllib', 'tomli', 'tasktrace.targets', 'fnmatch')]))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        for _ in range(2)
    ]
    assert [r.stderr for r in runs] == ["", ""]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first[0] and (first[1] or first[2])
    assert second == [True, False, False, False, False]
