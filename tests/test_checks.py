"""The value checks of convnet.checks: what each takes and gives back, and one message a key."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import ListConfig

from convnet import checks
from convnet.checks import ConfigError
from convnet.config import validate
from convnet.data.datamodule import ImageDataModule
from convnet.data.splits import check_fold
from convnet.module import ImageClassifier
from convnet.schedules import one_cycle


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        (checks.positive_int, 3, 3),
        (checks.positive_int, np.int64(2), 2),
        (checks.non_negative_int, 0, 0),
        (checks.integer, -7, -7),
        (checks.positive_number, 1e-3, 1e-3),
        (checks.positive_number, 2, 2.0),
        (checks.non_negative_number, 0, 0.0),
        (checks.fraction, 0, 0.0),
        (checks.fraction, 0.999, 0.999),
        (checks.boolean, False, False),
        (checks.to_pair, 3, (3, 3)),
        (checks.to_pair, [2, 5], (2, 5)),
        (checks.to_pair, (4, 1), (4, 1)),
        (checks.to_pair, ListConfig([32, 16]), (32, 16)),
    ],
)
def test_a_good_value_comes_back_in_its_working_form(check, value, expected) -> None:
    result = check(value, "key")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("check", "value", "allowed"),
    [
        (checks.positive_int, 0, "an integer >= 1"),
        (checks.positive_int, 2.0, "an integer >= 1"),
        (checks.positive_int, True, "an integer >= 1"),
        (checks.positive_int, "8", "an integer >= 1"),
        (checks.non_negative_int, -1, "an integer >= 0"),
        (checks.integer, 1.5, "an integer"),
        (checks.positive_number, 0, "a number > 0"),
        (checks.positive_number, False, "a number > 0"),
        (checks.non_negative_number, -1e-9, "a number >= 0"),
        (checks.fraction, 1, "a number in [0, 1)"),
        (checks.fraction, -0.1, "a number in [0, 1)"),
        (checks.fraction, "0.5", "a number in [0, 1)"),
        (checks.boolean, "yes", "true or false"),
        (checks.to_pair, 0, "an integer >= 1 or [height, width] of integers >= 1"),
        (checks.to_pair, [3], "an integer >= 1 or [height, width] of integers >= 1"),
        (checks.to_pair, [3, 0], "an integer >= 1 or [height, width] of integers >= 1"),
        (checks.to_pair, [3, 3, 3], "an integer >= 1 or [height, width] of integers >= 1"),
        (checks.to_pair, "3", "an integer >= 1 or [height, width] of integers >= 1"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_key_value_and_what_is_allowed(
    check, value, allowed
) -> None:
    with pytest.raises(ConfigError) as error:
        check(value, "data.some_key")
    assert str(error.value) == f"data.some_key={value!r} is not allowed: use {allowed}."


def test_a_pair_may_allow_zero_and_an_int_may_need_more_than_one() -> None:
    assert checks.to_pair([0, 1], "padding", minimum=0) == (0, 1)
    assert checks.int_at_least(2, "data.num_classes", 2) == 2
    with pytest.raises(
        ConfigError, match=r"data\.num_classes=1 is not allowed: use an integer >= 2"
    ):
        checks.int_at_least(1, "data.num_classes", 2)


def test_choose_returns_the_entry_or_lists_the_names() -> None:
    table = {"relu": 1, "gelu": 2}
    assert checks.choose(table, "activation", "gelu") == 2
    with pytest.raises(ConfigError) as error:
        checks.choose(table, "activation", "swish")
    assert str(error.value) == "activation='swish' is not allowed: use one of gelu, relu."


def test_a_list_from_a_config_is_shown_as_the_user_wrote_it() -> None:
    with pytest.raises(ConfigError, match=r"^data\.image_size=\[32\] is not allowed"):
        checks.to_pair(ListConfig([32]), "data.image_size")


def _validate_problem(train_config, override: str) -> str:
    """Return the one problem validate() reports for a train config with `override`."""
    with pytest.raises(ConfigError) as error:
        validate(train_config(override))
    title, problem, fix = str(error.value).splitlines()
    assert title == "invalid config:" and fix.startswith("Fix these keys")
    return problem.strip()


def _data(**arguments) -> ImageDataModule:
    options = {
        "source": None,  # only read by setup()
        "in_channels": 3,
        "num_classes": 4,
        "image_size": [32, 32],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    return ImageDataModule(**{**options, **arguments})


@pytest.mark.parametrize(
    ("override", "build"),
    [
        ("data.batch_size=0", lambda: _data(batch_size=0)),
        ("data.eval_batch_size=-5", lambda: _data(eval_batch_size=-5)),
        ("data.num_classes=1", lambda: _data(num_classes=1)),
        ("data.image_size=[32]", lambda: _data(image_size=ListConfig([32]))),
        ("data.crop_padding=-1", lambda: _data(crop_padding=-1)),
        ("data.num_workers=-2", lambda: _data(num_workers=-2)),
        (
            "module.label_smoothing=1.0",
            lambda: ImageClassifier(None, None, None, num_classes=4, label_smoothing=1.0),
        ),
    ],
)
def test_a_bad_value_reads_the_same_from_validate_and_from_its_constructor(
    override: str, build, train_config
) -> None:
    from_config = _validate_problem(train_config, override)
    assert from_config.startswith(f"{override} is not allowed: use ")
    with pytest.raises(ConfigError) as error:
        build()
    assert str(error.value) == from_config


def test_fold_and_schedule_keys_are_refused_with_the_vocabularys_words() -> None:
    with pytest.raises(
        ConfigError, match=r"^data\.num_folds=1 is not allowed: use an integer >= 2"
    ):
        check_fold(0, 1)
    with pytest.raises(ConfigError, match=r"^data\.fold=5 is not allowed: use an integer from 0"):
        check_fold(5, 5)
    with pytest.raises(ConfigError, match=r"^scheduler\.pct_start=1\.5 is not allowed"):
        one_cycle(None, 10, pct_start=1.5)
    with pytest.raises(ConfigError, match=r"scheduler\.anneal_strategy='cosine'.*cos, linear"):
        one_cycle(None, 10, anneal_strategy="cosine")


def test_an_output_that_exists_is_kept_unless_overwrite_is_true(tmp_path) -> None:
    output = tmp_path / "predictions.csv"
    checks.keep_existing([output], "output", output, False)  # nothing there yet
    output.write_text("mine")
    with pytest.raises(ConfigError) as refused:
        checks.keep_existing([output], "output", output, False)
    assert str(refused.value) == (
        f"output={output} exists already: give another output, or overwrite=true to replace it"
    )
    checks.keep_existing([output], "output", output, True)
    with pytest.raises(ConfigError, match=r"^overwrite='yes' is not allowed: use true or false"):
        checks.keep_existing([output], "output", output, "yes")
    pictures = [tmp_path / "pictures" / f"{n}.png" for n in range(6)]
    pictures[0].parent.mkdir()
    for picture in pictures[1:]:
        picture.write_bytes(b"")
    with pytest.raises(ConfigError) as refused:
        checks.keep_existing(pictures, "output_dir", tmp_path / "pictures", False)
    assert str(refused.value) == (
        f"output_dir={tmp_path / 'pictures'} holds 5 files already (1.png, 2.png, 3.png, "
        "4.png, and 1 more): give another output_dir, or overwrite=true to replace them"
    )


def test_an_output_folder_that_is_a_file_is_refused(tmp_path) -> None:
    assert checks.output_folder(tmp_path / "new", "output_dir") == tmp_path / "new"
    assert checks.output_folder(str(tmp_path), "output_dir") == tmp_path
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError) as refused:
        checks.output_folder(tmp_path / "notes.txt", "output_dir")
    assert str(refused.value) == (
        f"output_dir={tmp_path / 'notes.txt'} is a file, not a folder: give the folder to "
        "write into"
    )
    with pytest.raises(ConfigError) as refused:  # under a file: mkdir would fail after the work
        checks.output_folder(tmp_path / "notes.txt" / "export", "output_dir")
    assert str(refused.value) == (
        f"output_dir={tmp_path / 'notes.txt' / 'export'} cannot be made: "
        f"{tmp_path / 'notes.txt'} is a file; give the folder to write into"
    )
