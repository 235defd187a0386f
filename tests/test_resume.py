"""Resuming: the checkpoint is read once, and `last` means one thing, in one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from convnet.checks import ConfigError
from convnet.resume import Resume, checkpoint_file, continued_run, resumed_run
from convnet.train import train
from tests.compose import REPO

QUIET = ["callbacks=minimal", "callbacks.rich_progress_bar=null"]
SOURCES = sorted((REPO / "src" / "convnet").rglob("*.py"))


def test_a_resumed_run_reads_its_checkpoint_once(
    train_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = train_config("debug=fast", "test=false", *QUIET)
    train(first)
    checkpoint = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    reads: list[str] = []
    load = torch.load

    def counting_load(file, *args, **kwargs):
        if Path(str(file)).resolve() == checkpoint.resolve():
            reads.append(str(file))
        return load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    resumed = train_config(
        "debug=fast", "test=false", "ckpt_path=last", "trainer.max_epochs=2", *QUIET
    )
    resume = Resume.from_config(resumed)  # as `convnet train` makes it, before the run
    train(resumed, resume=resume)
    assert len(reads) == 1
    assert resume.global_step is not None and resume.global_step > 0
    assert load(checkpoint, weights_only=True)["epoch"] == 1  # it resumed: epoch 2 ran


def test_the_run_folder_choice_and_the_guard_agree_on_what_a_checkpoint_continues(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    for name in ("2026-01-01_00-00-00", "2026-01-02_00-00-00"):
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "checkpoints" / "last.ckpt").write_bytes(b"")
    newest = runs / "2026-01-02_00-00-00"
    assert continued_run("last", runs) == newest
    assert resumed_run("last", newest) == newest
    inside = runs / "2026-01-01_00-00-00" / "checkpoints" / "last.ckpt"
    assert continued_run(str(inside), runs) == inside.parent.parent
    assert resumed_run(str(inside), tmp_path) == inside.parent.parent.absolute()
    assert continued_run(str(tmp_path / "elsewhere.ckpt"), runs) is None
    assert continued_run(None, runs) is None and resumed_run(None, runs) is None


def test_the_last_sentinel_is_interpreted_in_convnet_resume_alone() -> None:
    readers = [
        path.relative_to(REPO).as_posix()
        for path in SOURCES
        if re.search(r"\bLAST\b|==\s*[\"']last[\"']|[\"']last[\"']\s*==", path.read_text())
    ]
    assert readers == ["src/convnet/resume.py"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, name: str) -> set[str]:
    """Return the convnet modules `path` imports when it is imported (not in functions)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module.startswith("convnet")}


def test_the_import_graph_has_no_cycles() -> None:
    modules = {_module_name(path): path for path in SOURCES}
    graph = {
        name: {m for m in _top_level_imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ importing its own submodules is how packages export names.
    graph = {
        name: {
            m
            for m in edges
            if not (modules[name].name == "__init__.py" and m.startswith(name + "."))
        }
        for name, edges in graph.items()
    }
    cycles = []
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append([*stack[stack.index(other) :], other])
            elif other not in state:
                visit(other, [*stack, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_a_ckpt_path_that_is_no_file_is_refused_naming_the_checkpoints_of_a_folder(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"ckpt_path=.*gone\.ckpt: no such checkpoint file"):
        checkpoint_file(str(tmp_path / "gone.ckpt"), tmp_path / "new")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError) as refused:
        checkpoint_file(str(run), tmp_path / "new")
    assert str(refused.value) == (
        f"ckpt_path={run} is a folder, not a checkpoint file: give one of its checkpoints: "
        f"{run}/checkpoints/last.ckpt"
    )
    assert checkpoint_file(str(run / "checkpoints" / "last.ckpt"), tmp_path / "new") == (
        run / "checkpoints" / "last.ckpt"
    )
