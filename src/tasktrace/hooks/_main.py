"""``__main__`` targets: the script never goes through the import finders, so a tracer armed
before it runs wraps the targets as its top-level code binds them."""

from __future__ import annotations

import sys
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

# Re-exported (``X as X``) for the tests, which knew them here.
from tasktrace._importlib_bootstrap import _PostImportFinder as _PostImportFinder
from tasktrace._importlib_bootstrap import _registry as _registry
from tasktrace.config import TargetSettings
from tasktrace.exceptions import TargetError
from tasktrace.hooks._applying import _MAIN, _apply_match, _apply_target, _lock, _log, applied

if TYPE_CHECKING:
    pass

# tasktrace.targets (and fnmatch) are imported where targets are resolved, once a target
# module is imported: the bootstrap installs the hooks in every process it starts.


#: ``__main__`` targets with the strictness they were installed with.
_main_targets: List[Tuple[TargetSettings, bool]] = []


_main_tracer: Optional[_MainTracer] = None


# --------------------------------------------------------------------------------------
# __main__ targets
# --------------------------------------------------------------------------------------


def apply_main_targets() -> List[str]:
    """Apply every installed ``__main__`` target to ``sys.modules["__main__"]`` now.

    For a script that is already running (the tracer of :func:`install_main_hook` is not
    needed then). Returns the concrete paths wrapped.
    """
    main = sys.modules.get(_MAIN)
    if main is None:
        return []
    with _lock:
        targets = list(_main_targets)
    wrapped: List[str] = []
    for target, strict in targets:
        wrapped.extend(_apply_target(target, strict, main))
    return wrapped


def _running_main_frame() -> Optional[FrameType]:
    """The ``<module>`` frame of ``__main__`` if it is on this thread's stack."""
    main = sys.modules.get(_MAIN)
    if main is None:
        return None
    main_dict = vars(main)
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is main_dict and frame.f_code.co_name == "<module>":
            return frame
        frame = frame.f_back
    return None


def install_main_hook() -> bool:
    """Arrange for the installed ``__main__`` targets to be applied to the script.

    Called by :func:`install`. From sitecustomize (before the script runs) it arms the
    top-level tracer described in the module docstring; from inside the running script it
    applies the targets at once. Idempotent.

    Returns:
        Whether the targets were armed or applied (False: none installed, no
        ``__main__`` module, or another trace function is active).
    """
    global _main_tracer
    with _lock:
        targets = list(_main_targets)
        tracer = _main_tracer
    if not targets:
        return False
    if tracer is not None and tracer.armed:
        tracer.add_targets(targets)
        return True
    main = sys.modules.get(_MAIN)
    if main is None:
        return False
    if _running_main_frame() is not None:
        apply_main_targets()
        return True
    if sys.gettrace() is not None:
        _log.warning(
            "tasktrace: a trace function (debugger or coverage?) is active, so the "
            "__main__ targets %s cannot be applied; decorate them with "
            "@tasktrace.background_task instead",
            ", ".join(repr(t.function) for t, _ in targets),
        )
        return False
    tracer = _MainTracer(vars(main), targets)
    with _lock:
        _main_tracer = tracer
    tracer.arm()
    return True


def _script_modules() -> Optional[Tuple[Tuple[str, ...], bool]]:
    """The module-name parts of the running script, and whether only all of them name it.

    ``python /srv/app/job.py`` gives ``((..., "srv", "app", "job"), False)``: ``job``,
    ``app.job`` and so on may all name the file (its folder comes first on ``sys.path``).
    ``python -m app.job`` gives ``(("app", "job"), True)``. None for ``-c``, the prompt,
    and programs that are not a ``.py`` file (console scripts).
    """
    argv = sys.argv
    if not argv:
        return None
    first = argv[0]
    if first.startswith("-m"):
        # In sitecustomize argv[0] is still "-m": the module name is in the command line.
        original: List[str] = list(getattr(sys, "orig_argv", ()))
        for i, arg in enumerate(original):
            if arg == "-m" and i + 1 < len(original):
                return tuple(original[i + 1].split(".")), True
            if arg.startswith("-m") and len(arg) > 2:
                return tuple(arg[2:].split(".")), True
        return None
    if not first.endswith(".py"):
        return None
    import os.path

    return tuple(os.path.abspath(first)[:-3].split(os.sep)), False


def warn_script_targets(targets: List[TargetSettings]) -> None:
    """Warn once for each target whose module is the running script itself.

    ``python job.py`` (or ``python -m job``) runs the file as ``__main__``; a target
    ``job:work`` waits for an import of ``job`` that usually never comes, so it would record
    nothing without a word. The target is left installed (the script may import itself).
    """
    if not targets:
        return
    script = _script_modules()
    if script is None:
        return
    parts, exact = script
    stem = parts[-1]
    for target in targets:
        if stem not in target.function:  # (nearly all, for a few tens of nanoseconds)
            continue
        module = target.function.partition(":")[0]
        if module.rpartition(".")[2] != stem or module == _MAIN:
            continue
        names = tuple(module.split("."))
        if names != (parts if exact else parts[-len(names) :]):
            continue
        _log.warning(
            "tasktrace: %s: %s is the script itself, which Python runs as __main__, so this "
            "target wraps only a separate import of %s; to record the script's own %s, name "
            "it '__main__:%s'",
            f"{target.source}: {target.function!r}" if target.source else repr(target.function),
            target.module,
            target.module,
            target.object_path,
            target.object_path,
        )


_UNSET = object()


class _MainTracer:
    """Wraps ``__main__`` targets as the script's top-level code binds them.

    While armed, the global trace function is called for each new frame; it ignores all
    but the ``<module>`` frame of ``__main__``, to which it gives the line tracer. When that
    frame starts, the names its code stores (``STORE_NAME``) are read from the bytecode:
    the *watched* names are those a target may refer to, and tracing stops at the first
    line past the last line storing any of them once all are bound, or, if one of them is
    never bound (its store is in a branch not taken), at the first call the script makes
    into one of its own functions past that line.
    """

    def __init__(self, main_dict: Dict[str, Any], targets: List[Tuple[TargetSettings, bool]]):
        self.main_dict = main_dict
        self.module_frame: Optional[FrameType] = None
        self.plain: List[Tuple[TargetSettings, bool]] = []
        self.globs: List[Tuple[TargetSettings, bool]] = []
        #: Name -> the targets to apply when it is bound (or re-bound).
        self.watched: Dict[str, List[Tuple[TargetSettings, bool]]] = {}
        #: What each watched name was bound to when its targets were last applied.
        self.seen: Dict[str, Any] = {}
        #: The last top-level line that stores a watched name.
        self.last_line = 0
        #: Whether the top-level code has run past ``last_line``.
        self.past_last_line = False
        #: Missing targets are not worth a warning (``python -c``).
        self.quiet = False
        self.dict_size = -1
        self.armed = False
        self.real_import: Callable[..., Any] = __import__
        # Bound methods are created anew on each attribute access; keep one of each so
        # that ``sys.gettrace() is self.tracer`` can tell whether our tracer is the one set.
        self.tracer: Callable[[FrameType, str, Any], Any] = self.global_trace
        self.importer: Callable[..., Any] = self.untraced_import
        self.add_targets(targets)

    def add_targets(self, targets: List[Tuple[TargetSettings, bool]]) -> None:
        from tasktrace.targets import is_glob

        for entry in targets:
            target = entry[0]
            kind = self.globs if is_glob(target.object_path) else self.plain
            if entry not in kind:
                kind.append(entry)

    def arm(self) -> None:
        import builtins

        self.armed = True
        # Tracing slows every frame, and a script's top level is mostly imports of code we
        # never need to see; so while armed, import statements run with tracing paused.
        self.real_import = builtins.__import__
        builtins.__import__ = self.importer
        sys.settrace(self.tracer)

    def untraced_import(self, *args: Any, **kwargs: Any) -> Any:
        """``builtins.__import__`` while armed: the import itself runs untraced."""
        if sys.gettrace() is not self.tracer:
            return self.real_import(*args, **kwargs)
        sys.settrace(None)
        try:
            return self.real_import(*args, **kwargs)
        finally:
            if self.armed:
                # The module frame keeps its f_trace, so its line events resume.
                sys.settrace(self.tracer)

    def disarm(self) -> None:
        """Stop tracing; leaves a trace function or ``__import__`` set by others alone."""
        if not self.armed:
            return
        self.armed = False
        if sys.gettrace() is self.tracer:
            sys.settrace(None)
        import builtins

        if builtins.__import__ is self.importer:
            builtins.__import__ = self.real_import
        if self.module_frame is not None:
            self.module_frame.f_trace = None
            self.module_frame = None

    # The two trace functions run for every frame while armed: keep them tiny.

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_globals is not self.main_dict:
            return None
        code = frame.f_code
        if self.module_frame is None:
            if code.co_name == "<module>":
                self.start(frame)
                return self.line_trace if self.armed else None
            return None
        # The script calls one of its own functions (not a class body, comprehension or
        # lambda) after the last line that could bind a target: its definitions are done.
        if (
            self.past_last_line
            and code.co_flags & 0x1  # CO_OPTIMIZED: a real function
            and not code.co_name.startswith("<")
        ):
            self.finish()
        return None

    def line_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if not self.armed:
            return None
        if event == "return":
            self.finish()
            return None
        self.check()
        if frame.f_lineno > self.last_line:
            self.past_last_line = True
            if all(name in self.main_dict for name in self.watched):
                self.finish()
                return None
        return self.line_trace

    # ---------------------------------------------------------------------------------

    def start(self, frame: FrameType) -> None:
        """The script's top-level code starts: decide which names to watch."""
        from fnmatch import fnmatchcase

        self.module_frame = frame
        # ``python -c`` code is rarely the program meant by a __main__ target: it is how
        # multiprocessing starts its spawn and forkserver children. Do not warn there.
        self.quiet = frame.f_code.co_filename == "<string>"
        stored = _top_level_stores(frame.f_code)
        firsts = {t.object_path.split(".")[0] for t, _ in self.plain}
        patterns = [t.object_path.split(".")[0] for t, _ in self.globs]
        for name, line in stored.items():
            if name in firsts or any(fnmatchcase(name, p) for p in patterns):
                self.watched[name] = [
                    (t, strict) for t, strict in self.plain if t.object_path.split(".")[0] == name
                ]
                self.last_line = max(self.last_line, line)
        self.check()
        if not self.watched:
            self.finish()

    def check(self) -> None:
        """Apply plain targets whose name was (re)bound; sweep globs if names were added."""
        main = sys.modules.get(_MAIN)
        if main is None or vars(main) is not self.main_dict:
            return
        main_dict = self.main_dict
        for name, entries in self.watched.items():
            value = main_dict.get(name, _UNSET)
            if value is _UNSET or value is self.seen.get(name, _UNSET):
                continue
            for target, strict in entries:
                _apply_target(target, strict, main)
            self.seen[name] = main_dict.get(name)
        if self.globs and len(main_dict) != self.dict_size:
            self.sweep_globs(main)

    def sweep_globs(self, main: ModuleType) -> None:
        from tasktrace.targets import resolve

        for target, strict in self.globs:
            try:
                matches = resolve(main, target.object_path)
            except TargetError:
                continue  # reported by finish() if it never resolves
            # Wrapping an already wrapped object is a no-op in tasktrace.api.
            for match in matches:
                _apply_match(target, strict, main, match)
        self.dict_size = len(self.main_dict)

    def finish(self) -> None:
        """Stop tracing; apply what is there; report targets that never resolved."""
        if not self.armed:
            return
        self.check()
        self.disarm()
        main = sys.modules.get(_MAIN)
        if main is None:
            return
        from tasktrace.targets import resolve

        done = {(a.target, a.module) for a in applied() if a.ok}
        for target, strict in (*self.plain, *self.globs):
            if (target, _MAIN) in done:
                continue
            if self.quiet:
                try:
                    if not resolve(main, target.object_path):
                        continue
                except TargetError:
                    _log.debug("tasktrace: %s not found in python -c code", target.function)
                    continue
            # Logs the "did you mean", "matched nothing", or raises when strict.
            _apply_target(target, strict, main)


def _top_level_stores(code: Any) -> Dict[str, int]:
    """Name -> last line, for every name the top-level ``code`` binds by STORE_NAME/GLOBAL."""
    import dis  # only when there are __main__ targets to find

    stores: Dict[str, int] = {}
    line = code.co_firstlineno
    for instruction in dis.get_instructions(code):
        positions = getattr(instruction, "positions", None)  # 3.11+
        if positions is not None and positions.lineno is not None:
            line = positions.lineno
        elif type(instruction.starts_line) is int:  # 3.9, 3.10 (a bool on 3.13)
            line = instruction.starts_line
        if instruction.opname in ("STORE_NAME", "STORE_GLOBAL"):
            name = instruction.argval
            stores[name] = max(stores.get(name, 0), line)
    return stores


def _reset_for_tests() -> None:
    """Forget the ``__main__`` targets and disarm the tracer."""
    global _main_tracer
    with _lock:
        tracer = _main_tracer
        _main_targets.clear()
        _main_tracer = None
    if tracer is not None:
        tracer.disarm()
