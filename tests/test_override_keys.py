"""Overrides of keys the config does not have: named, with the key meant, before Hydra runs."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from convnet.cli.override_keys import check_override_keys
from convnet.compose import compose_config
from convnet.config import ConfigError
from convnet.config_keys import compose_or_explain, missing_key_lines
from tests.test_readme import COMMANDS, _overrides


def _refusal(arguments: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        check_override_keys("train", arguments)
    assert isinstance(stopped.value.code, str)  # a message: the command ends with status 1
    return stopped.value.code


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("optimizer.lrr=0.1", "optimizer has no key `lrr`; did you mean optimizer.lr?"),
        ("trainer.max_epoch=3", "trainer has no key `max_epoch`; did you mean trainer.max_epochs?"),
        ("seeed=1", "the train config has no key `seeed`; did you mean seed?"),
        ("model.conv.padding=2", "model has no key `conv` (model=small has layers, "),
    ],
)
def test_a_key_the_config_does_not_have_is_named(override: str, said: str) -> None:
    # The reference: Hydra's own composition refuses the same override.
    with pytest.raises(ConfigCompositionException, match="Could not override"):
        compose_config("train", [override])
    key = override.split("=")[0]
    assert f"  {key}: {said}" in _refusal([override])


@pytest.mark.parametrize(
    ("arguments", "hydras_error", "said"),
    [
        (
            ["model.layers.x=64"],
            ValueError,
            "model.layers.x: model.layers is a list: set one of its 6 items by its number "
            "(model.layers.0=...) or all of it (model.layers=[...])",
        ),
        (
            ["-m", "hydra.sweeper.params.seed=1"],
            AssertionError,
            "hydra.sweeper.params.seed: hydra.sweeper.params is empty with Hydra's basic "
            "sweeper; to sweep seed, give its values with -m: -m seed=a,b",
        ),
    ],
)
def test_a_key_under_a_list_or_a_null_is_named_where_hydra_raises_a_traceback(
    arguments: list[str], hydras_error: type[Exception], said: str
) -> None:
    # The reference: Hydra's composition fails with OmegaConf's own error, not its message.
    with pytest.raises(hydras_error):
        compose_config("train", [arguments[-1]], multirun=arguments[0] == "-m")
    assert f"  {said}" in _refusal([*arguments, "seed=1"])  # among other overrides


def test_every_missing_key_is_named_at_once_with_the_groups_chosen() -> None:
    message = _refusal(["model=resnet20", "optimizer.lrr=0.1", "model.widht_multiplier=2"])
    lines = message.splitlines()
    assert lines[0] == "ConfigError: invalid config:"
    assert lines[1:3] == [
        "  optimizer.lrr: optimizer has no key `lrr`; did you mean optimizer.lr?",
        "  model.widht_multiplier: model has no key `widht_multiplier`; did you mean "
        "model.width_multiplier?",
    ]
    assert lines[3] == (
        "Fix these keys on the command line (`python scripts/train.py --cfg job` prints every "
        "key there is)."
    )


def test_a_users_config_folder_is_searched_as_hydra_searches_it(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tiny.yaml").write_text("defaults: [small, _self_]\nlayers: [8, M]\n")
    arguments = ["--config-dir", str(tmp_path), "model=tiny"]
    check_override_keys("train", [*arguments, "model.layers=[4]", "--cfg", "job"])
    message = _refusal([*arguments, "model.layerz=[4]"])
    assert "model.layerz: model has no key `layerz`; did you mean model.layers?" in message


@pytest.mark.parametrize(
    "arguments",
    [
        ["-m", "optimizer.lrr=0.1,0.2"],  # a swept key: the sweep check composes each job
        ["--config-name", "eval", "optimizer.lrr=0.1"],  # another primary config
        ["model=no_such_model"],  # not a missing key: Hydra lists the models
        ["optimizer.lr=0.1,0.2"],  # ambiguous without -m: Hydra says how to write it
        ["--no-such-flag"],  # Hydra's parser refuses it, with its usage
        ["optimizer.lr=["],  # an override that does not parse: Hydra points at it
        ["-m", "optimizer.lr=["],
    ],
)
def test_what_is_not_a_missing_key_is_left_to_hydra(arguments: list[str]) -> None:
    check_override_keys("train", arguments)


@pytest.mark.parametrize("command", [c for c in COMMANDS if "scripts/train.py" in c])
def test_the_readmes_train_commands_pass(command: str) -> None:
    compose = functools.partial(compose_config, "train")
    assert missing_key_lines(compose, _overrides(command)) == []


@pytest.mark.parametrize("command", ["eval", "predict", "export", "visualize"])
def test_a_data_key_of_a_command_that_reads_a_checkpoint_is_added_with_a_plus(
    command: str,
) -> None:
    # Their `data` is empty: it is merged into the data config stored in the checkpoint.
    with pytest.raises(SystemExit) as stopped:
        check_override_keys(command, ["ckpt_path=x", "data.eval_batch_size=8"])
    assert (
        "data.eval_batch_size: data has no keys to override here; to add this one: "
        "+data.eval_batch_size=8"
    ) in str(stopped.value.code)
    # The advice, followed, composes: the key is the command's data override.
    added = ["ckpt_path=x", "+data.eval_batch_size=8", "+data.source.root=/photos"]
    check_override_keys(command, added)
    data = compose_config(command, added).data
    assert data == {"eval_batch_size": 8, "source": {"root": "/photos"}}


@pytest.mark.parametrize(
    ("override", "said"),
    [
        # eval's model comes from the checkpoint: its config has no model group.
        (
            "model=resnet20",
            "model: the eval config has no key `model` (the eval config has task_name, "
            "ckpt_path, splits, data, trainer, paths)\n",
        ),
        # eval's data is a section the checkpoint fills in, not a group.
        (
            "data=digits",
            "  data=digits: `data` is a section of the eval config, not a config group to pick "
            "from: set its keys with +data.<key>=value (it is empty here: the checkpoint's "
            "stored config gives the rest)\n",
        ),
    ],
)
def test_a_group_a_command_does_not_pick_from_is_named_with_its_keys(
    override: str, said: str
) -> None:
    # The reference: Hydra finds no such group in eval's defaults list.
    with pytest.raises(ConfigCompositionException, match="No match in the defaults list"):
        compose_config("eval", ["ckpt_path=x", override])
    with pytest.raises(SystemExit) as stopped:
        check_override_keys("eval", ["ckpt_path=x", override])
    assert said in str(stopped.value.code)


@pytest.mark.parametrize(
    ("override", "options"), [("optimizer=5", "adamw, sgd"), ("scheduler=true", "constant")]
)
def test_a_group_given_a_number_is_named_with_its_configs(override: str, options: str) -> None:
    # The reference: Hydra refuses it with a traceback of its defaults list.
    with pytest.raises(ValueError, match="Config group override must be a string"):
        compose_config("train", [override])
    group = override.split("=")[0]
    said = f"  {override}: {group} is a config group: pick one of its configs by name ("
    message = _refusal(["seed=1", override])
    assert said in message and options in message


def test_a_key_a_section_may_have_is_added_as_the_refusal_says() -> None:
    # A custom layer's keys are optional: the one not given is added with `+`.
    override = "model.layers.0.padding=valid"
    line = (
        "model.layers.0.padding: model.layers[0] has no key `padding` (model.layers[0] has "
        "type, filters, kernel_size, activation); to add it: +model.layers.0.padding=valid"
    )
    assert line in _refusal(["model=custom", override])
    check_override_keys("train", ["model=custom", f"+{override}"])
    cfg = compose_config("train", ["model=custom", f"+{override}"])
    assert cfg.model.layers[0].padding == "valid"


def test_summary_the_benchmark_and_the_api_name_a_missing_key_too() -> None:
    meant = r"optimizer has no key `lrr`; did you mean optimizer\.lr\?"
    with pytest.raises(ConfigError, match=meant):
        compose_or_explain("train", ["optimizer.lrr=0.1"])
    with pytest.raises(ConfigCompositionException, match="Could not find 'model/resnet2'"):
        compose_or_explain("train", ["model=resnet2"])  # Hydra's list of the models
    # What Hydra lets through as OmegaConf's or its parser's traceback, named too (the API).
    with pytest.raises(ConfigError, match=r"optimizer=5: optimizer is a config group"):
        compose_or_explain("train", ["optimizer=5"])
    with pytest.raises(ConfigError, match=r"model\.layers\.x: model\.layers is a list"):
        compose_or_explain("train", ["model.layers.x=64"])


def test_a_sweeps_fixed_key_the_config_does_not_have_is_named_before_the_sweep() -> None:
    # Hydra composes a sweep's config before its sweeper runs, swept overrides left out.
    arguments = ["-m", "seed=0,1", "optimizer.lrr=0.1"]
    message = _refusal(arguments)
    assert "  optimizer.lrr: optimizer has no key `lrr`; did you mean optimizer.lr?" in message
    check_override_keys("train", ["-m", "seed=0,1", "optimizer.lr=0.1", "model=small,resnet20"])
