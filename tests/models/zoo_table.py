"""The zoo against its references: `python -m tests.models.zoo_table` prints the table.

For every configs/model/*.yaml: parameters on CIFAR-10-shaped data (3x32x32, 10 classes)
next to the published count, and for the torchvision names, the ImageNet stem/head build
(1000 classes, 224x224) against torchvision: parameters, whether torchvision's state_dict
loads with strict=True, the largest logit difference with its weights on one image, and
MACs against torchvision's published figure. Takes a minute or two on a CPU.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from rich.table import Table

from convnet.build import build_model
from convnet.console import show
from convnet.summary import summarize
from tests.compose import CONFIGS, compose_config

# Published counts for the CIFAR-10 shape: He et al. 2016, table 6 (option A shortcuts).
PAPER_COUNTS = {
    "resnet20": "0.27M",
    "resnet32": "0.46M",
    "resnet44": "0.66M",
    "resnet56": "0.85M",
    "resnet110": "1.7M",
    # TensorFlow's CNN tutorial (the seed example), on CIFAR-10.
    "custom": "122,570",
}
# How each torchvision family gets its ImageNet layout.
IMAGENET = {"resnet": "model.stem=imagenet", "vgg": "model.head=imagenet"}


@dataclass
class ZooRow:
    """One model's figures; torchvision fields are None for models torchvision lacks."""

    name: str
    cifar_parameters: int
    published: str
    imagenet_parameters: int | None = None
    torchvision_parameters: int | None = None
    strict_load: str = ""
    logit_difference: float | None = None
    macs: int | None = None
    torchvision_macs: float | None = None


def _model(name: str, *overrides: str) -> torch.nn.Module:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config("train", [f"model={name}", "data=cifar10", *overrides], Path(tmp))
    return build_model(cfg.model)


def zoo_row(name: str) -> ZooRow:
    """Return the figures of the model configs/model/<name>.yaml describes."""
    with torch.device("meta"):
        cifar = _model(name)
    row = ZooRow(name, sum(p.numel() for p in cifar.parameters()), PAPER_COUNTS.get(name, "-"))
    family = next((f for f in IMAGENET if name.startswith(f)), None)
    if family is None or not hasattr(torchvision.models, name):  # the CIFAR ResNets
        return row
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    ours = _model(name, IMAGENET[family], "data.num_classes=1000", "data.image_size=224").eval()
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    row.imagenet_parameters = sum(p.numel() for p in ours.parameters())
    row.torchvision_parameters = meta["num_params"]
    try:
        ours.load_state_dict(reference.state_dict(), strict=True)
        row.strict_load = "ok"
    except RuntimeError as error:
        row.strict_load = str(error).splitlines()[0]
        return row
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        row.logit_difference = (ours(image) - reference(image)).abs().max().item()
    row.macs = summarize(ours, 3, 224).macs
    row.torchvision_macs = meta["_ops"]
    return row


def zoo_table(rows: list[ZooRow]) -> Table:
    """Return the rows as a rich table."""
    table = Table(title="convnet's zoo against the published and torchvision figures")
    for column in (
        "model", "params 3x32x32, 10 classes", "published", "params ImageNet layout",
        "torchvision", "strict load", "max |logit diff|", "GMACs 224", "torchvision GMACs",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("model", "strict load") else "right")

    def number(value: int | None) -> str:
        return "" if value is None else f"{value:,}"

    for row in rows:
        table.add_row(
            row.name,
            number(row.cifar_parameters),
            row.published,
            number(row.imagenet_parameters),
            number(row.torchvision_parameters),
            row.strict_load,
            "" if row.logit_difference is None else f"{row.logit_difference:.1e}",
            "" if row.macs is None else f"{row.macs / 1e9:.2f}",
            "" if row.torchvision_macs is None else f"{row.torchvision_macs:.2f}",
        )
    return table


if __name__ == "__main__":
    names = sorted(path.stem for path in (CONFIGS / "model").glob("*.yaml"))
    show(zoo_table([zoo_row(name) for name in names]))
