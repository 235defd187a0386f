"""Run convnet's commands as new processes that start with torch and Lightning imported.

`python scripts/train.py ...` spends 3.5 s (9 s on slower machines) importing torch,
torchvision and Lightning before it reads its first argument, and the suite runs ~40 such
commands. Here each command is a fork of a multiprocessing forkserver that has imported
those libraries once: still a process of its own (its own pid, exit status, stdout and
stderr, signals, working folder and environment), running the script as `__main__` with
its arguments, as `python` would (and what it starts itself, as DDP's other ranks, are
plain subprocesses of it). What depends on the import itself (the third-party warnings it
prints, `--help` answering before torch is imported) is tested with real subprocesses.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Third-party libraries only: convnet itself is imported by each command, so a command
# runs the code as it is on disk.
PRELOAD = ["torch", "torchvision", "torchmetrics", "lightning.pytorch", "hydra", "tensorboard"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


_RUNNER_FILES = {__file__, runpy.__file__, "<frozen runpy>"}


def _exit_status(stop: SystemExit) -> int:
    """Return the exit status Python gives a SystemExit (printing a message one carries)."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code
    print(stop.code, file=sys.stderr)
    return 1


def _run_as_main(args: Sequence[str]) -> None:
    """Run `python *args` in this process: a script, `-m module` or `-c code`."""
    if args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        sys.path.insert(0, "")
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = __builtins__
        sys.modules["__main__"] = main
        exec(compile(args[1], "<string>", "exec"), main.__dict__)
    elif args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(args)
        sys.path.insert(0, str(Path(args[0]).resolve().parent))
        runpy.run_path(args[0], run_name="__main__")


def _child(args: Sequence[str], cwd: str, env: Mapping[str, str], out: str, err: str) -> None:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    for fd, path in ((1, out), (2, err)):
        file = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.dup2(file, fd)
        os.close(file)
    # As Python opens them for a file: stdout buffered, stderr line-buffered.
    text = {"encoding": "utf-8", "closefd": False}
    sys.stdout = open(1, "w", **text)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", **text)  # noqa: SIM115
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    try:
        _run_as_main(args)
    except SystemExit as stop:
        status = _exit_status(stop)
    except BaseException as error:
        # The traceback Python prints: from the command's own code, not this runner's.
        frames = error.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename in _RUNNER_FILES:
            frames = frames.tb_next
        traceback.print_exception(type(error), error, frames)
        status = 1
    # What the interpreter does at exit: wait for the threads, run the atexit functions.
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    try:
        atexit._run_exitfuncs()
    except SystemExit as stop:
        status = _exit_status(stop)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class Script:
    """A started command, with the part of subprocess.Popen's interface the tests use."""

    def __init__(
        self, args: Sequence[str | Path], cwd: Path, env: Mapping[str, str] | None, merge: bool
    ) -> None:
        self.args = [str(a) for a in args]
        self._folder = Path(tempfile.mkdtemp(prefix="convnet-script-"))
        weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)  # unread output
        self._out = self._folder / "stdout"
        self._err = self._out if merge else self._folder / "stderr"
        self._out.touch()
        self._err.touch()
        env = dict(os.environ if env is None else env)
        self._process = _context.Process(
            target=_child, args=(self.args, str(cwd), env, str(self._out), str(self._err))
        )
        self._process.start()
        self.pid = self._process.pid
        self.returncode: int | None = None
        self._output: tuple[str, str] | None = None

    @property
    def merged(self) -> bool:
        """Whether stderr goes to stdout."""
        return self._err == self._out

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def output(self) -> tuple[str, str]:
        """Return what the command wrote to stdout and to stderr (the same text if merged)."""
        if self._output is None:
            output = self._out.read_text(errors="replace"), self._err.read_text(errors="replace")
            if self.poll() is None:
                return output
            self._output = output
            shutil.rmtree(self._folder, ignore_errors=True)
        return self._output

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the command (killing it past `timeout`); return its stdout and stderr."""
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise
        return self.output()


def start_script(
    args: Sequence[str | Path], cwd: Path, env: Mapping[str, str] | None = None, merge: bool = False
) -> Script:
    """Start `python *args` (a script and its arguments, `-m module ...` or `-c code ...`) in
    `cwd`, with `env` (default: this process's environment); `merge` sends stderr to
    stdout, as `stderr=subprocess.STDOUT` does."""
    return Script(args, cwd, env, merge)


def run_script(
    args: Sequence[str | Path],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    merge: bool = False,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run `python *args` to its end, as subprocess.run(capture_output=True, text=True) does;
    with `check`, a non-zero exit raises subprocess.CalledProcessError."""
    script = start_script(args, cwd, env, merge)
    stdout, stderr = script.communicate(timeout)
    done = subprocess.CompletedProcess(script.args, script.returncode, stdout, stderr)  # type: ignore[arg-type]
    if check:
        done.check_returncode()
    return done


def wait_for(
    condition: Callable[[], bool], *scripts: Script, timeout: float = 600, every: float = 0.01
) -> None:
    """Return once `condition()` holds, failing if any of `scripts` ends first or `timeout`
    seconds pass (with the last output of the script that ended)."""
    deadline = time.time() + timeout
    while not condition():
        for script in scripts:
            if script.poll() is not None:
                stdout, stderr = script.output()
                printed = stdout if script.merged else stdout + stderr
                raise AssertionError(f"{script.args} ended first:\n{printed[-3000:]}")
        assert time.time() < deadline, f"not within {timeout} s"
        time.sleep(every)
