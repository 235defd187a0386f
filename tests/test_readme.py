"""The README's commands: every one composes, and the cheap ones run as written."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from tests.compose import REPO, TINY_SHAPES, compose_config
from tests.scripts import run_script

README = (REPO / "README.md").read_text()
# Commands are the README's indented code lines that run a script; a `$ command` line shows
# what it prints too (checked by test_what_the_readme_shows_a_command_print_is_what_it_prints).
COMMANDS = [
    line.strip()
    for line in README.splitlines()
    if line.startswith("    ") and "python scripts/" in line and not line.startswith("    $ ")
]


def _overrides(command: str) -> list[str]:
    """Return the Hydra overrides of a README command, sweeps reduced to their first value."""
    # `<date>_<time>` and `<run>` stand for a folder's name, which Hydra's grammar would not take.
    named = re.sub(r"<date>_<time>|<run>", "2026-01-01_00-00-00", command)
    words = shlex.split(named.split("python scripts/", 1)[1], comments=True)[1:]
    overrides = [w for w in words if not w.startswith("-") and w not in ("job",)]
    return [re.sub(r"=([^=\[]*?),.*$", r"=\1", o) for o in overrides]


def test_the_first_screen_has_the_install_and_test_commands() -> None:
    first_screen = README[:1500]
    assert "pip install -e . && python scripts/train.py\n" in first_screen
    assert 'pip install -e ".[dev]" && pytest\n' in first_screen


@pytest.mark.parametrize("command", [c for c in COMMANDS if "scripts/train.py" in c])
def test_every_train_command_in_the_readme_composes(command: str, tmp_path: Path) -> None:
    overrides = [o for o in _overrides(command) if not o.startswith("ckpt_path=")]
    _check_composes(overrides, tmp_path)


def _check_composes(overrides: list[str], tmp_path: Path) -> None:
    cfg = compose_config("train", overrides, tmp_path)
    for override in overrides:
        key, value = override.split("=", 1)
        if "." in key:  # a value, not a group choice
            assert str(OmegaConf.select(cfg, key)).replace(" ", "") == value


def _run(args: list[str], cwd: Path) -> str:
    result = run_script(args, cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.parametrize("command", [c for c in COMMANDS if "scripts/benchmark.py" in c])
def test_every_benchmark_command_in_the_readme_composes(command: str, tmp_path: Path) -> None:
    # Its options are written --name=value, so every other word is a train override.
    _check_composes(_overrides(command), tmp_path)


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if "scripts/predict.py" in c or "scripts/export.py" in c]
)
def test_every_predict_and_export_command_in_the_readme_composes(
    command: str, tmp_path: Path
) -> None:
    config_name = "predict" if "scripts/predict.py" in command else "export"
    # `<run>` stands for a run folder's name, which Hydra's grammar would not take.
    overrides = shlex.split(command.split(".py", 1)[1].replace("<run>", "2026-01-01_00-00-00"))
    cfg = compose_config(config_name, overrides, tmp_path)
    for override in overrides:
        key, value = override.split("=", 1)
        assert str(OmegaConf.select(cfg, key)).replace("'", "").replace(" ", "") == value


def _python_example() -> str:
    """Return the README's Python example: the indented block that imports convnet.api."""
    lines = README.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("    from convnet.api")))
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):  # the text after the block
            break
        block.append(line.removeprefix("    "))
    return "\n".join(block).strip() + "\n"


@pytest.mark.slow
def test_the_readmes_python_example_runs_as_written(tmp_path: Path) -> None:
    Image.new("L", (8, 8), 255).save(tmp_path / "seven.png")  # the file it classifies
    result = run_script(["-c", _python_example()], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] in [str(digit) for digit in range(10)]
    (run,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_readme_train_resume_and_eval_commands_run(tmp_path: Path) -> None:
    train = str(REPO / "scripts" / "train.py")
    # The README's commands on tiny data, with checkpoints and TensorBoard but no pictures.
    quick = ["debug=fast", *TINY_SHAPES, "callbacks=minimal", "callbacks.rich_progress_bar=null"]
    _run([train, *quick], tmp_path)
    (run,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert (run / ".hydra" / "config.yaml").is_file()
    assert "${" not in (run / "config.yaml").read_text()  # resolved
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    # `ckpt_path=last` continues the same run: no second run directory appears.
    _run([train, "ckpt_path=last", *quick, "trainer.max_epochs=2"], tmp_path)
    assert [p.name for p in (tmp_path / "outputs" / "train" / "runs").iterdir()] == [run.name]

    output = _run(
        [str(REPO / "scripts" / "eval.py"), f"ckpt_path={run}/checkpoints/last.ckpt"],
        tmp_path,
    )
    assert "test" in output and "acc" in output
    (evaluation,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    assert (evaluation / "metrics.json").is_file()


@pytest.mark.slow
def test_printing_the_config_trains_nothing(tmp_path: Path) -> None:
    output = _run(
        [str(REPO / "scripts" / "train.py"), "model=resnet18", "data=mnist", "--cfg", "job"],
        tmp_path,
    )
    assert "_target_: convnet.models.ResNet" in output
    assert "name: mnist" in output
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if "scripts/summary.py" in c or "scripts/explain_conv.py" in c]
)
def test_readme_commands_that_write_nothing_run_as_written(command: str) -> None:
    words = shlex.split(command)
    assert words[0] == "python"
    output = _run(words[1:], REPO)
    assert "Traceback" not in output


# The README's `convnet ...` commands, and the config of its own-folder example.
CONVNET_COMMANDS = [line.strip() for line in README.splitlines() if line.startswith("    convnet ")]
OWN_MODEL = "# mine/model/tiny.yaml"


def test_the_convnet_commands_in_the_readme_name_subcommands_and_compose(tmp_path: Path) -> None:
    from convnet.cli import COMMANDS as SUBCOMMANDS

    assert len(CONVNET_COMMANDS) >= 4
    for command in CONVNET_COMMANDS:
        words = shlex.split(command)
        if words[1:2] == ["--help"]:
            continue
        assert words[1] in SUBCOMMANDS, command
        if words[1] == "train" and "--config-dir" not in words:
            _check_composes([w for w in words[2:] if not w.startswith("-")], tmp_path)


def test_the_readmes_help_and_own_config_folder_commands_run_as_written(tmp_path: Path) -> None:
    # The model file as the README shows it, where its command looks for it.
    block = README.split(f"    {OWN_MODEL}\n", 1)[1].split("\n\n", 1)[0]
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "tiny.yaml").write_text(
        "\n".join(line.removeprefix("    ") for line in block.splitlines()) + "\n"
    )
    for command in CONVNET_COMMANDS:
        words = shlex.split(command)
        if "--help" in words or "--cfg" in words:
            output = _run(["-m", "convnet", *words[1:]], tmp_path)
            assert "Traceback" not in output
            if "--config-dir" in words:
                assert "layers:\n  - 16\n  - M\n  - 32\n  - M\n" in output
    assert not (tmp_path / "outputs").exists()


# scripts/gpu_benchmarks.sh: the README's GPU figures in one command.
GPU_SCRIPT = REPO / "scripts" / "gpu_benchmarks.sh"


def _gpu_script(
    *args: str, python: str = sys.executable, **env: str
) -> subprocess.CompletedProcess:
    """Run scripts/gpu_benchmarks.sh with `args`, its commands on `python`."""
    return subprocess.run(
        ["bash", str(GPU_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": python, **env},
    )


def test_the_gpu_benchmark_scripts_commands_compose_and_use_real_options(tmp_path: Path) -> None:
    listed = _gpu_script("--print")
    assert listed.returncode == 0, listed.stderr
    commands = listed.stdout.splitlines()
    scripts = {shlex.split(c)[1] for c in commands}
    assert scripts == {"scripts/benchmark.py", "scripts/train.py"}, commands
    benchmark_help = _run(["scripts/benchmark.py", "--help"], REPO)
    for command in commands:
        assert command.startswith("python scripts/"), command
        words = shlex.split(command)[2:]
        for option in (w.split("=", 1)[0] for w in words if w.startswith("--")):
            assert option in benchmark_help, f"{option} is not an option of benchmark.py"
        # `+key=value` adds a key: compare it without the plus.
        overrides = _overrides(command)
        cfg = compose_config("train", overrides, tmp_path)
        for override in overrides:
            key, value = override.removeprefix("+").split("=", 1)
            if "." in key:
                assert str(OmegaConf.select(cfg, key)).replace(" ", "") == value, override


def test_the_gpu_benchmark_script_stops_at_once_without_a_cuda_device(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = _gpu_script(str(logs), CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 1
    assert "torch sees none" in result.stderr
    # Nothing ran: no command's log, no run folder.
    assert [path.name for path in logs.iterdir()] == ["device.txt"]


def test_the_gpu_benchmark_script_runs_commands_by_name_and_refuses_an_unknown_one(
    tmp_path: Path,
) -> None:
    listed = _gpu_script("--print")
    logs = tmp_path / "logs"
    result = _gpu_script(str(logs), "sweep", "cifar10")
    assert result.returncode == 2
    names = result.stderr.split("the names:")[1].split()
    assert names == ["sweep", "cifar10_fast", "cifar10_fast_compiled", "default_run",
                     "default_run_bar"]  # fmt: skip
    assert len(names) == len(listed.stdout.splitlines())  # one name a command
    assert "no command named cifar10;" in result.stderr
    assert not logs.exists()  # refused before anything was made


def test_the_gpu_benchmark_script_runs_only_the_commands_named(tmp_path: Path) -> None:
    # An interpreter that says it sees a GPU and writes down each command it is given.
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        '[[ $1 == -c && $2 == *torch.cuda* ]] && { echo "Fake GPU torch 0"; exit 0; }\n'
        f'echo "$*" >> {calls}\n'
    )
    fake.chmod(0o755)
    logs = tmp_path / "logs"
    result = _gpu_script(str(logs), "default_run", "cifar10_fast", python=str(fake))
    assert result.returncode == 0, result.stdout + result.stderr
    ran = calls.read_text().splitlines()
    # In the script's order, each training run into its own folder under the logs.
    assert [line.split()[1] for line in ran] == ["experiment=cifar10_fast", "trainer.max_epochs=3"]
    assert ran[0].endswith(f"hydra.run.dir={logs}/runs/cifar10_fast")
    assert ran[1].endswith(f"hydra.run.dir={logs}/runs/default_run")
    logged = sorted(path.name for path in logs.glob("*.log"))
    assert logged == ["cifar10_fast.log", "default_run.log"]
    assert "== sweep" not in result.stdout and "Fake GPU" in result.stdout


def _shown_sessions() -> list[tuple[str, list[str]]]:
    """Return the README's terminal sessions: a `$ command` line and the lines it prints."""
    sessions, lines = [], README.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("    $ "):
            printed = []
            for after in lines[number + 1 :]:
                if not after.startswith("    ") or after.startswith("    $ "):
                    break
                printed.append(after[4:])
            sessions.append((line[6:], printed))
    return sessions


def test_the_readme_has_a_terminal_session() -> None:
    commands = [command for command, _ in _shown_sessions()]
    assert "python scripts/train.py optimizer.lrr=0.1" in commands
    assert "python scripts/train.py +optimizer.lrr=0.1" in commands


@pytest.mark.parametrize(("command", "printed"), _shown_sessions())
def test_what_the_readme_shows_a_command_print_is_what_it_prints(
    command: str, printed: list[str], tmp_path: Path
) -> None:
    words = shlex.split(command)
    assert words[0] == "python"
    words[1] = str(REPO / words[1])
    result = run_script(words[1:], cwd=tmp_path)
    shown = (result.stdout + result.stderr).splitlines()
    assert printed and all(line in shown for line in printed), "\n".join(shown[-20:])
