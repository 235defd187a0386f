"""A sweep's summary as a rich table in the terminal and as CSV, Markdown and PNG files."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from rich.table import Table

from convnet.console import show
from convnet.sweeps.plot import plot_summary
from convnet.sweeps.summary import Setting, SweepSummary, summarize

log = logging.getLogger(__name__)

CSV_FILE = "summary.csv"
MARKDOWN_FILE = "summary.md"
PLOT_FILE = "summary.png"
# Longest failure reason shown in the Markdown file and the terminal (the CSV keeps it
# whole; the job's log has the traceback).
MARKDOWN_ERROR = 90
TERMINAL_ERROR = 48


def short_value(value: str) -> str:
    """Return an override value as a reader wants it: floats to 4 significant digits."""
    if value.lstrip("+-").isdigit():
        return value
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def _metric_text(setting: Setting) -> str:
    if setting.mean is None:
        return "-"
    if setting.std is None:
        return f"{setting.mean:.4f}"
    return f"{setting.mean:.4f} ± {setting.std:.4f}"


def _seconds_text(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _short_error(error: str, width: int) -> str:
    return error if len(error) <= width else error[: width - 3] + "..."


def display_rows(
    summary: SweepSummary, error_width: int = MARKDOWN_ERROR
) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows the table and the Markdown file show, best first."""
    metric = summary.metric or "metric"
    repeats = f" (mean ± std over {', '.join(summary.repeat_keys)})" if summary.repeat_keys else ""
    header = ["#", "jobs", *summary.params, f"{metric}{repeats}", "epochs", "time/job", "status"]
    with_errors = any(setting.error for setting in summary.settings)
    if with_errors:
        header.append("error")
    rows = []
    for rank, setting in enumerate(summary.settings, start=1):
        row = [
            str(rank),
            ",".join(job.name for job in setting.jobs),
            *(short_value(setting.params[key]) for key in summary.params),
            _metric_text(setting),
            f"{setting.epochs:.0f}" if setting.epochs.is_integer() else f"{setting.epochs:.1f}",
            _seconds_text(setting.seconds),
            setting.status,
        ]
        if with_errors:
            row.append(_short_error(setting.error, error_width))
        rows.append(row)
    return header, rows


def _caption(summary: SweepSummary) -> str:
    fixed = " ".join(f"{key}={value}" for key, value in summary.fixed.items())
    jobs = summary.jobs
    total = sum(job.result.seconds for job in jobs if job.result)
    return (
        f"{len(jobs)} jobs, {len(summary.settings)} settings, {summary.direction} "
        f"{summary.metric}, {_seconds_text(total)} in all" + (f"; fixed: {fixed}" if fixed else "")
    )


def _short_names(keys: list[str]) -> dict[str, str]:
    """Return each key's last part (`optimizer.lr` -> `lr`) where that is unambiguous."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: name if last.count(name) == 1 else key for key, name in zip(keys, last, strict=True)
    }


def summary_table(summary: SweepSummary) -> Table:
    """Return the summary as a rich table, best setting first (parameters by the last
    part of their key where that is unambiguous; the files keep the whole key)."""
    header, rows = display_rows(summary, TERMINAL_ERROR)
    short = _short_names(summary.params)
    header = [short.get(name, name) for name in header]
    table = Table(title=f"sweep {summary.sweep_dir}", caption=_caption(summary))
    for index, name in enumerate(header):
        if name == "error":
            table.add_column(name, overflow="fold")
            continue
        # Values keep their width; on a narrow terminal long key names fold instead.
        widest = max((len(row[index]) for row in rows), default=1)
        justify = "left" if name in ("jobs", "status") else "right"
        table.add_column(name, justify=justify, overflow="fold", min_width=widest)
    for row in rows:
        table.add_row(*row, style="bold green" if row[0] == "1" else None)
    return table


def write_csv(summary: SweepSummary, path: Path) -> Path:
    """Write one line per setting, best first, with full-precision values and errors."""
    metric = summary.metric or "metric"
    columns = ["rank", "jobs", *summary.params, f"{metric} mean", f"{metric} std", "repeats"]
    columns += ["epochs", "seconds", "status", "error"]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for rank, setting in enumerate(summary.settings, start=1):
            writer.writerow(
                [
                    rank,
                    " ".join(job.name for job in setting.jobs),
                    *(setting.params[key] for key in summary.params),
                    "" if setting.mean is None else setting.mean,
                    "" if setting.std is None else setting.std,
                    len(setting.jobs),
                    setting.epochs,
                    round(setting.seconds, 2),
                    setting.status,
                    setting.error,
                ]
            )
    return path


def write_markdown(summary: SweepSummary, path: Path) -> Path:
    """Write the table as Markdown, with the sweep folder and the fixed overrides above it."""
    header, rows = display_rows(summary)
    lines = [f"# Sweep {summary.sweep_dir.name}", "", _caption(summary), ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_report(sweep_dir: str | Path, show_table: bool = True) -> SweepSummary:
    """Return the sweep's summary after writing summary.csv, summary.md and summary.png
    into the sweep folder (and showing the table in the terminal)."""
    summary = summarize(sweep_dir)
    write_csv(summary, summary.sweep_dir / CSV_FILE)
    write_markdown(summary, summary.sweep_dir / MARKDOWN_FILE)
    plot = plot_summary(summary, summary.sweep_dir / PLOT_FILE)
    if show_table:
        show(summary_table(summary))
    written = [CSV_FILE, MARKDOWN_FILE] + ([PLOT_FILE] if plot else [])
    log.info("sweep summary: %s in %s", ", ".join(written), summary.sweep_dir)
    return summary
