"""The convnet command: its subcommands, its help, its quick answers and its quiet console."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from convnet import cli
from convnet.cli.app import config_groups, require_plugins
from tests.compose import REPO, TINY_SHAPES

# Each script of scripts/ and the convnet subcommand that is the same main.
SCRIPTS = {
    "train": "train",
    "eval": "eval",
    "visualize": "visualize",
    "predict": "predict",
    "export": "export",
    "summary": "summary",
    "benchmark": "benchmark",
    "sweep_summary": "sweep-summary",
    "explain_conv": "explain",
}
# What a third-party warning or notice looks like on the console.
THIRD_PARTY = re.compile(r"Warning|warnings\.warn|deprecated|Tip:|site-packages/")


def _convnet(*arguments: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run `python -m convnet <arguments>` in `cwd`, as a user runs `convnet`."""
    command = [sys.executable, "-m", "convnet", *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_convnet_help_lists_every_subcommand_and_the_config_groups(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli.main(["--help"], prog="convnet")
    shown = capsys.readouterr().out
    for name in SCRIPTS.values():
        assert re.search(rf"^  {name} ", shown, re.MULTILINE), name
    assert re.search(r"^  model +small \(default\), .*resnet20", shown, re.MULTILINE)
    assert re.search(r"^  hydra/launcher +parallel, slurm$", shown, re.MULTILINE)


def test_a_train_commands_groups_are_those_of_its_config_with_the_default_first() -> None:
    groups = config_groups("train")
    assert groups["data"][0] == "shapes (default)"
    assert "digits" in groups["data"]
    assert groups["debug"] == ["fast"]  # no default: `debug: null`
    assert "model" not in config_groups("eval")  # eval takes the checkpoint's model


def test_an_unknown_subcommand_names_the_subcommands() -> None:
    with pytest.raises(SystemExit, match=r"unknown subcommand 'fit'; choose from train, eval"):
        cli.main(["fit"], prog="convnet")


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_is_the_main_of_its_convnet_subcommand(script: str) -> None:
    namespace: dict[str, object] = {}
    exec((REPO / "scripts" / f"{script}.py").read_text(), namespace)
    module = __import__(f"convnet.cli.{cli.COMMANDS[SCRIPTS[script]][0]}", fromlist=["main"])
    assert namespace["main"] is module.main


@pytest.mark.parametrize(
    ("arguments", "status", "said"),
    [
        (["train", "--help"], 0, "Config groups"),
        (["train", "--cfg", "job"], 0, "optimizer:"),
        (
            ["train", "optimizer.lrr=0.1"],
            1,
            "optimizer has no key `lrr`; did you mean optimizer.lr?",
        ),
        (["train", "optimizer.lr=-1", "hydra.run.dir=run"], 1, "optimizer.lr=-1 is not allowed"),
        (["summary", "model=resnet2"], 1, "Could not find 'model/resnet2'"),
        (["summary", "optimizer.lrr=0.1"], 1, "did you mean optimizer.lr?"),
        (["benchmark", "optimizer.lr=-1"], 1, "optimizer.lr=-1 is not allowed"),
        (["explain", "--help"], 0, "--activation"),
        (["explain", "--stride", "0"], 2, "--stride 0 is not allowed: give one or two ints >= 1"),
    ],
)
def test_help_the_config_and_config_mistakes_answer_before_torch_is_imported(
    arguments: list[str], status: int, said: str, tmp_path: Path
) -> None:
    # Importing torch and Lightning takes seconds; none of these answers needs them.
    probe = (
        "import sys\nfrom convnet.cli import main\n"
        f"try:\n    main({arguments!r}, prog='convnet')\n"
        "except SystemExit as stop:\n    print(stop, file=sys.stderr)\n"
        # SystemExit("message") ends a command with status 1, as Python does.
        "    status = stop.code if isinstance(stop.code, int) else 1\n"
        "else:\n    status = 0\n"
        "heavy = [m for m in ('torch', 'lightning') if m in sys.modules]\n"
        "print('heavy:', heavy, 'status:', status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert f"heavy: [] status: {status}" in output, output[-3000:]
    assert said in output, output[-3000:]


def test_a_sweeper_or_launcher_without_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(SystemExit, match=r"pip install 'convnet\[sweeps\]'"):
        require_plugins(["-m", "hparams_search=optuna"])
    with pytest.raises(SystemExit, match=r"hydra-submitit-launcher.*'convnet\[slurm\]'"):
        require_plugins(["hydra/launcher=slurm"])
    require_plugins(["model=resnet20", "optimizer.lr=0.1,0.2"])  # no plugin needed


def test_a_users_config_folder_adds_a_model_without_editing_convnet(tmp_path: Path) -> None:
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "tiny.yaml").write_text(
        "defaults:\n  - small\n  - _self_\nlayers: [8, M]\n"
    )
    done = _convnet(
        "train", "--config-dir", str(tmp_path / "mine"), "model=tiny", "--cfg", "job", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "model:\n  _target_: convnet.models.VGG\n  layers:\n  - 8\n  - M\n" in done.stdout


@pytest.mark.slow
def test_convnet_train_runs_in_any_folder_into_its_outputs_without_third_party_warnings(
    tmp_path: Path,
) -> None:
    done = _convnet(
        "train",
        "debug=fast",
        "callbacks.rich_progress_bar=null",
        *TINY_SHAPES,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    noisy = [line for line in done.stderr.splitlines() if THIRD_PARTY.search(line)]
    assert not noisy, "\n".join(noisy)


def test_the_eval_tables_title_keeps_the_checkpoint_path_whole() -> None:
    from rich.console import Console

    from convnet.console import metrics_table

    path = "outputs/train/runs/2026-12-02_02-38-47/checkpoints/epoch000-acc0.0920.ckpt"
    console = Console(width=120, record=True)
    console.print(metrics_table(path, {"val": {"acc": 0.5}, "test": {"acc": 0.25}}))
    assert path in console.export_text().splitlines()[0]
