"""Run directories: fresh for a new run, the same for a resumed one."""

import datetime
import threading
from pathlib import Path

import pytest
from omegaconf import open_dict

from convnet import api
from convnet.runs import (
    NoRunToResumeError,
    RunFolderError,
    check_run_folders,
    check_sweep_folder,
    claim_fresh_run_dir,
    claim_run_folder,
    claim_sweep_folder,
    fresh_run_dir,
    newest_resumable_run,
    run_dir,
)
from tests.compose import compose_config, train_script


def _run_with_checkpoint(runs: Path, name: str) -> Path:
    folder = runs / name / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"x")
    return runs / name


def test_fresh_run_dir_never_reuses_an_existing_directory(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = fresh_run_dir(tmp_path, now)
    assert first.name == "2026-01-02_03-04-05"
    first.mkdir()
    second = fresh_run_dir(tmp_path, now)
    second.mkdir()
    third = fresh_run_dir(tmp_path, now)
    assert len({first, second, third}) == 3
    assert not third.exists()


def test_runs_claiming_one_name_at_the_same_instant_each_get_their_own_folder(
    tmp_path: Path,
) -> None:
    runs, stamp = 8, "2026-01-02_03-04-05"
    barrier, claimed = threading.Barrier(runs), []

    def claim() -> None:
        barrier.wait()
        claimed.append(claim_fresh_run_dir(tmp_path, stamp))

    threads = [threading.Thread(target=claim) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = [stamp] + [f"{stamp}_{n}" for n in range(1, runs)]
    assert sorted(folder.name for folder in claimed) == sorted(expected)
    assert all(folder.is_dir() for folder in claimed)


def test_a_fresh_folder_another_run_took_meanwhile_is_claimed_under_the_next_name(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    named = Path(run_dir(str(runs), None))
    assert not named.exists()  # named when the config is resolved, made when the run starts
    named.mkdir(parents=True)  # by another run, started in the same second
    claimed = claim_run_folder(named, existed=False)
    assert claimed == runs / f"{named.name}_1" and claimed.is_dir()
    # Hydra resolves hydra.run.dir again when it makes the folder: the claimed one.
    assert run_dir(str(runs), None) == str(claimed)


def test_a_new_folder_given_by_hand_that_another_run_makes_first_is_refused(
    tmp_path: Path,
) -> None:
    assert claim_run_folder(tmp_path / "new", existed=False).is_dir()
    with pytest.raises(RunFolderError, match=r"\S+new was made by another run starting at"):
        claim_run_folder(tmp_path / "new", existed=False)
    (tmp_path / "empty").mkdir()  # an empty folder the user made is theirs to give
    assert claim_run_folder(tmp_path / "empty", existed=True) == tmp_path / "empty"


def test_last_resumes_the_newest_run_that_has_a_last_checkpoint(tmp_path: Path) -> None:
    _run_with_checkpoint(tmp_path, "2026-01-01_00-00-00")
    newest = _run_with_checkpoint(tmp_path, "2026-01-02_00-00-00")
    (tmp_path / "2026-01-03_00-00-00").mkdir()  # a newer run that never saved
    assert newest_resumable_run(tmp_path) == newest
    assert Path(run_dir(str(tmp_path), "last")) == newest


def test_last_takes_the_latest_of_the_runs_started_in_one_second(tmp_path: Path) -> None:
    # Runs started in the same second are <stamp>, <stamp>_1, ...: _10 came after _9 and _2.
    stamp = "2026-01-01_00-00-00"
    for name in (stamp, *(f"{stamp}_{n}" for n in (1, 2, 9))):
        _run_with_checkpoint(tmp_path, name)
    latest = _run_with_checkpoint(tmp_path, f"{stamp}_10")
    assert newest_resumable_run(tmp_path) == latest
    # A later second still wins over any suffix of an earlier one.
    later = _run_with_checkpoint(tmp_path, "2026-01-01_00-00-01")
    assert newest_resumable_run(tmp_path) == later


def test_last_without_any_run_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(NoRunToResumeError, match="no run to resume") as error:
        newest_resumable_run(tmp_path / "runs")
    assert str(tmp_path / "runs") in str(error.value)


def test_a_checkpoint_inside_a_run_continues_that_run(tmp_path: Path) -> None:
    run = _run_with_checkpoint(tmp_path, "2026-01-01_00-00-00")
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert Path(run_dir(str(tmp_path), str(checkpoint))) == run.resolve()


def test_a_checkpoint_from_elsewhere_starts_a_fresh_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    chosen = Path(run_dir(str(runs), str(tmp_path / "elsewhere.ckpt")))
    assert chosen.parent == runs
    assert not chosen.exists()


def _finished_run(folder: Path) -> Path:
    """Return `folder` filled with what a finished run leaves there."""
    for name in [".hydra/config.yaml", "config.yaml", "checkpoints/last.ckpt", "result.json"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "events.out.tfevents.1.host.1.0").write_bytes(b"\x00events")
    return folder


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_run_into_a_folder_holding_another_run_names_it_and_the_fix(
    train_config, tmp_path: Path
) -> None:
    mine = _finished_run(tmp_path / "mine")
    with pytest.raises(RunFolderError) as error:
        check_run_folders(train_config(output_dir=mine))
    message = str(error.value)
    assert f"hydra.run.dir={mine} already holds another run" in message
    assert ".hydra/, config.yaml, checkpoints/, tensorboard/, result.json" in message
    assert "a new folder" in message and "ckpt_path=last" in message


def test_resuming_the_run_a_folder_holds_is_allowed_and_another_checkpoint_is_not(
    train_config, tmp_path: Path
) -> None:
    mine = _finished_run(tmp_path / "mine")
    check_run_folders(train_config("ckpt_path=last", output_dir=mine))
    check_run_folders(train_config(f"ckpt_path={mine}/checkpoints/last.ckpt", output_dir=mine))
    other = _finished_run(tmp_path / "other") / "checkpoints" / "last.ckpt"
    with pytest.raises(RunFolderError, match=r"ckpt_path=\S+other\S+ is not one of its"):
        check_run_folders(train_config(f"ckpt_path={other}", output_dir=mine))
    (mine / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(RunFolderError, match=r"but no checkpoints/last\.ckpt to continue"):
        check_run_folders(train_config("ckpt_path=last", output_dir=mine))


def test_resuming_with_no_run_to_resume_stops_before_a_folder_is_made(
    train_config, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    # What the run_dir resolver picks with nothing to resume: a fresh folder under runs/.
    with pytest.raises(NoRunToResumeError, match=r"no run to resume under \S+runs \(no"):
        check_run_folders(train_config("ckpt_path=last", output_dir=runs / "fresh"))
    # A folder given by hand, next to a run that could resume: it has nothing to continue.
    _finished_run(runs / "old")
    with pytest.raises(NoRunToResumeError, match=r"\S+new holds no run to continue"):
        check_run_folders(train_config("ckpt_path=last", output_dir=runs / "new"))


@pytest.mark.slow
def test_train_script_with_no_run_to_resume_makes_no_run_folder(tmp_path: Path) -> None:
    done = train_script(tmp_path, "ckpt_path=last")
    assert done.returncode == 1
    assert "NoRunToResumeError: ckpt_path=last: no run to resume" in done.stderr
    assert "Traceback" not in done.stderr
    runs = tmp_path / "outputs" / "train" / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_an_empty_or_new_folder_is_free_and_paths_output_dir_is_checked_too(
    train_config, tmp_path: Path
) -> None:
    check_run_folders(train_config(output_dir=tmp_path / "empty"))
    cfg = train_config(output_dir=tmp_path / "empty")
    with open_dict(cfg):
        cfg.paths.output_dir = str(_finished_run(tmp_path / "mine"))
    with pytest.raises(RunFolderError, match=r"paths\.output_dir=\S+mine already holds"):
        check_run_folders(cfg)


def test_a_sweep_into_the_folder_of_an_earlier_sweep_stops_unless_it_continues_it(
    tmp_path: Path,
) -> None:
    sweep = tmp_path / "sweep"
    cfg = compose_config("train", [f"hydra.sweep.dir={sweep}"], tmp_path)
    check_sweep_folder(cfg)
    _finished_run(sweep / "0")
    (sweep / "multirun.yaml").write_text("{}")
    with pytest.raises(RunFolderError, match=r"sweep\S* already holds another sweep \(multi"):
        check_sweep_folder(cfg)
    resumed = compose_config("train", [f"hydra.sweep.dir={sweep}", "ckpt_path=last"], tmp_path)
    check_sweep_folder(resumed)


def test_sweeps_started_in_the_same_second_each_claim_their_own_folder(tmp_path: Path) -> None:
    # The default sweep folder is named by the second: both configs resolve the same name.
    fixed = "hydra.sweep.dir=${paths.log_dir}/multiruns/${now:2026-01-01_00-00-00}"
    first = compose_config("train", [fixed], tmp_path)
    second = compose_config("train", [fixed], tmp_path)
    claimed = [claim_sweep_folder(cfg) for cfg in (first, second)]
    assert [path.name for path in claimed] == ["2026-01-01_00-00-00", "2026-01-01_00-00-00_1"]
    for cfg, path in zip((first, second), claimed, strict=True):
        assert path.is_dir() and cfg.hydra.sweep.dir == str(path)
        # Each job is composed again from the overrides: they carry the claimed folder.
        assert cfg.hydra.overrides.hydra[-1] == f"hydra.sweep.dir='{path}'"
    named = compose_config("train", [f"hydra.sweep.dir={tmp_path / 'mine'}"], tmp_path)
    assert claim_sweep_folder(named) is None  # a folder given by name is checked instead


@pytest.mark.slow
def test_train_script_into_a_folder_holding_another_run_writes_nothing_there(
    tmp_path: Path,
) -> None:
    mine = _finished_run(tmp_path / "mine")
    before = _snapshot(mine)
    done = train_script(tmp_path, f"hydra.run.dir={mine}")
    assert done.returncode == 1
    assert f"RunFolderError: hydra.run.dir={mine} already holds another run" in done.stderr
    assert "Traceback" not in done.stderr
    assert _snapshot(mine) == before


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["paths.log_dir={file}"], "hydra.run.dir={file}/train/runs/"),
        (["hydra.run.dir={file}/run"], "hydra.run.dir={file}/run cannot be made: "),
        (["-m", "seed=1,2", "hydra.sweep.dir={file}"], "hydra.sweep.dir={file} cannot be made: "),
    ],
)
def test_a_run_whose_folder_would_go_where_a_file_is_stops_naming_the_file(
    tmp_path: Path, overrides: list[str], refused: str
) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    done = train_script(tmp_path, *(o.format(file=file) for o in overrides), "debug=fast")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"RunFolderError: {refused.format(file=file)}")
    key = refused.split("=")[0]
    assert last.endswith(
        f"{file} is a file, not a folder. Nothing was written. Give {key} (or paths.log_dir, "
        "where the outputs go) a folder."
    )
    assert "Traceback" not in done.stderr and file.read_text() == "mine"


def test_the_python_apis_run_dir_holding_another_run_is_refused_unless_it_is_resumed(
    tmp_path: Path,
) -> None:
    mine = _finished_run(tmp_path / "mine")
    before = _snapshot(mine)
    with pytest.raises(RunFolderError) as refused:
        api.compose_run(["debug=fast"], run_dir=mine)
    assert str(refused.value).startswith(f"run_dir={mine} already holds another run (")
    assert "continue that run with ckpt_path=last and the same run_dir" in str(refused.value)
    assert _snapshot(mine) == before
    resumed = api.compose_run(["debug=fast", "ckpt_path=last"], run_dir=mine)
    assert resumed.paths.output_dir == str(mine)
    assert api.compose_run(["debug=fast"], run_dir=tmp_path / "new").paths.output_dir == str(
        tmp_path / "new"
    )
    # One string is the command line's words, as a shell splits them.
    line = api.compose_run("debug=fast 'optimizer.lr=0.5'", run_dir=tmp_path / "line")
    assert (line.optimizer.lr, line.trainer.max_epochs) == (0.5, 1)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match=r"notes\.txt is a file, not a folder"):
        api.compose_run(["debug=fast"], run_dir=tmp_path / "notes.txt" / "run")
