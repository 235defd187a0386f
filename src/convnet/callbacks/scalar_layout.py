"""TensorBoard's custom scalars layout, written with the run: charts that put series together.

The Scalars dashboard draws one chart per tag, so train and val loss never meet; its
custom scalars dashboard draws one chart per entry of a layout the run writes, each
gathering every tag that matches its regular expressions: train and val of a metric on one
chart, every stage's filter health on one chart.

Smoothing: every dashboard smooths with weight 0.6 by default, and no log can change that.
On per-epoch metrics (a few points) it shows, e.g., val/acc 0.93 where the value is 0.98.
The charts' titles say so, and the run's log gives the links that open the dashboards
with smoothing off: `?smoothing=0#timeseries`, `#scalars&_smoothingWeight=0`,
`#custom_scalars&_smoothingWeight=0` (TensorBoard reads them from the address).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import lightning as L
from torch.utils.tensorboard.summary import custom_scalars

from convnet.callbacks.base import tensorboard_writers

log = logging.getLogger(__name__)

# Query and fragment that open each dashboard unsmoothed.
UNSMOOTHED = {
    "timeseries": "?smoothing=0#timeseries",
    "scalars": "#scalars&_smoothingWeight=0",
    "custom_scalars": "#custom_scalars&_smoothingWeight=0",
}


def layout_summary(charts: Mapping[str, Mapping[str, Sequence[str]]]):
    """Return the custom scalars layout summary: {category: {chart title: [tag regexes]}},
    each chart a multi-line chart of every tag matching one of its regexes."""
    for category, entries in charts.items():
        for title, patterns in entries.items():
            if isinstance(patterns, str) or not patterns:
                raise ValueError(
                    f"callbacks.scalar_layout.charts.{category}.{title}={patterns!r}: give a "
                    "list of tag regular expressions, e.g. ['^train/loss$', '^val/loss$']"
                )
    return custom_scalars(
        {
            category: {title: ["Multiline", list(patterns)] for title, patterns in entries.items()}
            for category, entries in charts.items()
        }
    )


class ScalarLayout(L.Callback):
    """Write the custom scalars layout `charts` into the run's events when training starts.

    charts: {category: {chart title: [tag regular expressions]}}.
    """

    def __init__(self, charts: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        if not charts:
            raise ValueError(
                "callbacks.scalar_layout.charts is empty: give at least one chart, e.g. "
                "{'train and val': {loss: ['^train/loss$', '^val/loss$']}}"
            )
        self.summary = layout_summary(charts)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        writers = tensorboard_writers(trainer)
        for writer in writers:
            writer._get_file_writer().add_summary(self.summary)  # add_custom_scalars's own call
        if writers:
            links = ", ".join(f"http://localhost:6006/{suffix}" for suffix in UNSMOOTHED.values())
            log.info(
                "TensorBoard smooths every curve by 0.6 unless told not to: per-epoch metrics "
                "read true with smoothing 0, e.g. %s",
                links,
            )
