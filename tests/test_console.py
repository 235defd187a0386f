"""What convnet prints is printed whole, however narrow the console."""

import io

from rich.console import Console
from rich.table import Table

from convnet.console import show


def test_a_table_wider_than_the_console_is_printed_whole() -> None:
    table = Table(title="throughput")
    for name in ("arm", "img/s each", "best img/s", "ms/step", "peak MiB", "TFLOP/s"):
        table.add_column(name, justify="right")
    row = ["(b) convnet through Lightning", "968, 896, 836", "968.2", "132.2", "2977", "0.234"]
    table.add_row(*row)
    # A file, a pipe, a batch job's log: rich gives such a console 80 columns.
    out = io.StringIO()
    show(table, Console(file=out, width=80))
    printed = out.getvalue()
    assert "…" not in printed
    assert all(cell in printed for cell in row)
    assert max(len(line) for line in printed.splitlines()) > 80
