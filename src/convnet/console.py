"""Rich renderings for the terminal: the run config as a tree, metrics as a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from omegaconf import DictConfig, OmegaConf
from rich import get_console
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

# Groups shown first, in the order a reader looks for them.
CONFIG_ORDER = ("data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger")


def config_tree(cfg: DictConfig) -> Tree:
    """Return the resolved config as a rich tree, one branch per group."""
    tree = Tree("config", guide_style="dim")
    keys = [k for k in CONFIG_ORDER if k in cfg] + [k for k in cfg if k not in CONFIG_ORDER]
    for key in keys:
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=True)
            if isinstance(value, DictConfig)
            else (f"{value}\n")
        )
        tree.add(f"[bold]{key}").add(Syntax(text, "yaml", background_color="default"))
    return tree


def metrics_table(title: str, rows: Mapping[str, Mapping[str, float]]) -> Table:
    """Return a table with one row per split and one column per metric."""
    columns: list[str] = sorted({name for metrics in rows.values() for name in metrics})
    # The title is a checkpoint's path, longer than the table is wide: on one line, not
    # broken mid-word at the table's edge.
    table = Table(title=Text(title, no_wrap=True, overflow="ignore"))
    table.add_column("split")
    for column in columns:
        table.add_column(column, justify="right")
    for split, metrics in rows.items():
        table.add_row(split, *(_format(metrics.get(column)) for column in columns))
    return table


def per_class_table(title: str, classes: Sequence[str], accuracy: Sequence[float]) -> Table:
    """Return a table of accuracy per class name."""
    table = Table(title=title)
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for name, value in zip(classes, accuracy, strict=True):
        table.add_row(name, _format(value))
    return table


def _format(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def show(renderable: object, console: Console | None = None) -> None:
    """Print a rich renderable on `console` (default: rich's, on stdout) at its natural
    width, so that no figure or name is cut: rich squeezes a table into the console's width
    (80 columns in a file, a pipe or a batch job's log) and cuts its cells to `968…`."""
    console = console or get_console()
    # Measured without the console's own width limit: the widest natural layout.
    natural = console.measure(renderable, options=console.options.update_width(10_000)).maximum
    if natural > console.width:
        # Console.print never goes wider than its console, so a wider one takes this one.
        console = Console(
            file=console.file,
            width=natural,
            color_system=console.color_system,
            force_terminal=console.is_terminal,
        )
    console.print(renderable)
