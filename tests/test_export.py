"""Export: ONNX logits match PyTorch's under ONNX Runtime at any batch size, and a
safetensors export rebuilds (create_model) a network with identical logits; its JSON is data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from omegaconf import OmegaConf

from convnet import api
from convnet.checkpoints import CheckpointError
from convnet.checks import ConfigError
from convnet.export import ExportError, ExportFileError, check_inputs, export, export_onnx
from convnet.inference import ready
from convnet.models import create_model
from convnet.stored_config import UntrustedConfigError
from tests.compose import TINY_SHAPES, compose_config

QUICK = ["debug=fast", "callbacks=minimal", "callbacks.rich_progress_bar=null", "logger=none"]
# The parity the issue asks of ONNX Runtime against PyTorch, in logits.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last checkpoint of a tiny trained run."""
    root = tmp_path_factory.mktemp("export")
    return api.train([*TINY_SHAPES, *QUICK, "test=false", f"paths.root_dir={root}"]).last_checkpoint


def _export(checkpoint: Path, tmp_path: Path, *overrides: str):
    cfg = compose_config("export", [f"ckpt_path={checkpoint}", *overrides], tmp_path)
    return export(cfg)


def _onnx_logits(path: Path, batch: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]


def test_onnx_export_gives_pytorchs_logits_at_any_batch_size(
    checkpoint: Path, tmp_path: Path
) -> None:
    result = _export(checkpoint, tmp_path, "format=onnx")
    (path,) = result.files
    assert set(result.max_abs_diff) == {"random", "val"}
    assert max(result.max_abs_diff.values()) < TOLERANCE
    network = api.load(checkpoint, device="cpu").network
    for size in (1, 7):
        batch = torch.randn(size, 3, 32, 32)
        with torch.no_grad():
            expected = network(batch).numpy()
        assert np.abs(_onnx_logits(path, batch) - expected).max() < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small", "vgg11_bn", "resnet20", "resnet9", "custom"])
def test_onnx_parity_for_each_model_family(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = create_model(name)
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            # Running statistics away from (0, 1), so eval-mode normalisation does something.
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    data = {"in_channels": 3, "image_size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3}
    loaded = ready(network, OmegaConf.create({"data": data}), [str(i) for i in range(10)], "cpu")
    result = export_onnx(loaded, tmp_path, check_inputs(loaded, 0), TOLERANCE)
    batch = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = loaded.network(batch).numpy()
    diff = np.abs(_onnx_logits(result.files[0], batch) - expected).max()
    print(f"{name}: ONNX Runtime vs PyTorch max abs diff {diff:.2e}")
    assert diff < TOLERANCE


def test_safetensors_export_rebuilds_identical_logits(checkpoint: Path, tmp_path: Path) -> None:
    result = _export(checkpoint, tmp_path, "format=safetensors")
    weights, record = result.files
    assert weights.name == "model.safetensors" and record.name == "model.json"
    original = api.load(checkpoint, device="cpu")
    rebuilt = create_model(str(record)).eval()
    batch = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(batch), original.network(batch))
    exported = api.load(record, device="cpu")
    assert exported.classes == original.classes
    assert exported.transform.image_size == original.transform.image_size
    assert result.max_abs_diff == {"random": 0.0, "val": 0.0}


def _edited_export(checkpoint: Path, tmp_path: Path, edit) -> Path:
    (_, record) = _export(checkpoint, tmp_path, "format=safetensors", "check_images=0").files
    content = json.loads(record.read_text())
    edit(content)
    record.write_text(json.dumps(content))
    return record


def test_an_export_whose_json_names_code_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    def names_code(content: dict) -> None:
        content["model"]["activation"] = {"_target_": "os.system", "_args_": ["touch marker"]}

    record = _edited_export(checkpoint, tmp_path, names_code)
    with pytest.raises(UntrustedConfigError, match="Nothing in it was run"):
        create_model(str(record))
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (
            lambda c: c.update(weights="../model.safetensors"),
            ExportFileError,
            "not the name of a .safetensors file",
        ),
        (lambda c: c.update(format="other"), ExportFileError, "is not a convnet export"),
        (lambda c: c.update(version=99), ExportFileError, "has version 99"),
        # Checked as a checkpoint's class names are.
        (lambda c: c.update(classes=["a", "b"]), CheckpointError, "names 2 classes"),
    ],
)
def test_a_broken_export_names_the_file_and_the_problem(
    checkpoint: Path, tmp_path: Path, edit, error: type[Exception], message: str
) -> None:
    record = _edited_export(checkpoint, tmp_path, edit)
    with pytest.raises(error, match=message):
        api.load(record, device="cpu")


def test_an_unknown_format_lists_the_formats(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"format='tflite'.*onnx, safetensors"):
        _export(checkpoint, tmp_path, "format=tflite")


def test_an_earlier_export_in_the_output_dir_is_kept_unless_overwrite_is_true(
    checkpoint: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"an earlier export")
    cfg = compose_config("export", ["ckpt_path=nowhere.ckpt", f"output_dir={folder}"], tmp_path)
    with pytest.raises(ConfigError, match=r"holds 1 file already \(model\.onnx\)"):
        export(cfg)  # before the checkpoint (here none) is read
    assert (folder / "model.onnx").read_bytes() == b"an earlier export"
    _export(checkpoint, tmp_path, f"output_dir={folder}", "format=safetensors", "check_images=0")
    (written,) = _export(
        checkpoint, tmp_path, f"output_dir={folder}", "overwrite=true", "check_images=0"
    ).files
    assert written == folder / "model.onnx" and written.read_bytes() != b"an earlier export"


def _opset(path: Path) -> int:
    import onnx

    return next(entry.version for entry in onnx.load(str(path)).opset_import if entry.domain == "")


def test_the_onnx_file_is_at_the_opset_asked_or_none_is_written(
    checkpoint: Path, tmp_path: Path
) -> None:
    (written,) = _export(checkpoint, tmp_path, "opset=20", "check_images=0").files
    assert _opset(written) == 20
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"an earlier export")
    # Below 18 torch.onnx converts down, which fails for most networks: then it says so and
    # the earlier file stays, even with overwrite=true; where it succeeds, the file is at 17.
    try:
        (written,) = _export(
            checkpoint, tmp_path, "opset=17", f"output_dir={folder}", "overwrite=true"
        ).files
    except ExportError as error:
        assert "opset=17: torch.onnx wrote this network at opset 18, not 17" in str(error)
        assert (folder / "model.onnx").read_bytes() == b"an earlier export"
    else:
        assert _opset(written) == 17
    assert sorted(path.name for path in folder.iterdir()) == ["model.onnx"]  # nothing partial


@pytest.mark.parametrize(
    ("opset", "said"), [("0", "opset=0 is not allowed"), ("99", "opset=99 is not an ONNX opset")]
)
def test_an_opset_onnx_does_not_have_is_refused(opset: str, said: str, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    with pytest.raises(ConfigError, match=said):  # before the checkpoint (here none) is read
        _export(Path("nowhere.ckpt"), tmp_path, f"opset={opset}", f"output_dir={folder}")
    assert not folder.exists()
