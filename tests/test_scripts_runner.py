"""tests/scripts.py runs a command as `python` would: checked against real subprocesses."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts import run_script, start_script, wait_for

PROBE = """
import atexit, os, sys
atexit.register(lambda: print("at exit", flush=True))
print(sys.argv[1:], os.getcwd(), os.environ.get("PROBE"), sys.path[0] == "")
print("to stderr", file=sys.stderr)
"""


@pytest.mark.parametrize(
    "code",
    [
        PROBE,
        PROBE + "sys.exit(3)",
        PROBE + "sys.exit('stopped: a message')",
        PROBE + "raise ValueError('a bad value')",
    ],
    ids=["ends", "exit 3", "exit with a message", "an exception"],
)
def test_a_command_prints_exits_and_sees_what_a_subprocess_does(code: str, tmp_path: Path) -> None:
    env = {"PROBE": "set", "PATH": "/usr/bin:/bin"}
    args = ["-c", code, "an argument"]
    real = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    forked = run_script(args, cwd=tmp_path, env=env, timeout=60)
    assert forked.returncode == real.returncode
    assert forked.stdout == real.stdout
    assert forked.stderr == real.stderr


def test_merged_streams_keep_their_order(tmp_path: Path) -> None:
    code = "import sys\nfor n in range(3):\n    print(n, flush=True); print(-n, file=sys.stderr)"
    done = run_script(["-c", code], cwd=tmp_path, merge=True)
    assert done.stdout.split() == ["0", "0", "1", "-1", "2", "-2"]


def test_a_script_runs_as_main_with_its_folder_first_on_the_path(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("NAME = 'helper beside the script'\n")
    script = tmp_path / "script.py"
    script.write_text("import sys, helper\nprint(__name__, helper.NAME, sys.argv)\n")
    done = run_script([script, "x=1"], cwd=Path("/"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"__main__ helper beside the script ['{script}', 'x=1']\n"


def test_a_signal_ends_a_running_command_as_it_ends_a_process(tmp_path: Path) -> None:
    started = tmp_path / "started"
    code = f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)"
    script = start_script(["-c", code], cwd=tmp_path)
    wait_for(started.exists, script, timeout=60)
    script.send_signal(signal.SIGTERM)
    assert script.wait(timeout=60) == -signal.SIGTERM


def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        run_script(["-c", "import time; time.sleep(60)"], cwd=tmp_path, timeout=1)


def test_a_scripts_traceback_is_the_one_python_prints(tmp_path: Path) -> None:
    script = tmp_path / "boom.py"
    script.write_text("def main():\n    raise KeyError('missing')\n\nmain()\n")
    real = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60)
    forked = run_script([script], cwd=tmp_path, timeout=60)
    assert forked.returncode == real.returncode == 1
    assert forked.stderr == real.stderr
    assert "boom.py" in real.stderr and "KeyError: 'missing'" in real.stderr


def test_waiting_on_a_command_that_ends_first_fails_with_its_output(tmp_path: Path) -> None:
    script = start_script(["-c", "print('ended early')"], cwd=tmp_path, merge=True)
    with pytest.raises(AssertionError, match=r"ended first:\nended early\n$"):
        wait_for(lambda: False, script, timeout=60)
