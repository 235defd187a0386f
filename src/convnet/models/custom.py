"""A network written as a list of layers in YAML, like a Keras Sequential model."""

from __future__ import annotations

import difflib
import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from convnet.checks import ConfigError, positive_int, to_pair
from convnet.models.shape_check import (
    LARGEST_SIDE,
    check_image_size,
    smallest_image_size,
    warn_one_pixel_convolutions,
)
from convnet.models.stack_layers import LAYER_TYPES, Residual, Shape, dense, flatten

log = logging.getLogger(__name__)

# Module names may not hold dots (PyTorch uses them as separators) and become TensorBoard tags.
_NAME = re.compile(r"[A-Za-z0-9_-]+")
# Types that hold a list of layers, which CustomNet builds itself: their keys -> required.
_CONTAINERS = {"residual": {"layers": True}}
TYPES = [*LAYER_TYPES, *_CONTAINERS]
# Keras' names of keys -> convnet's (Conv2D's dilation_rate is the conv's dilation).
KEY_ALIASES = {"dilation_rate": "dilation"}


def _keys(kind: str) -> dict[str, bool]:
    """Return the config keys a layer type takes (its builder's arguments after `shape`),
    each mapped to whether it is required."""
    if kind in _CONTAINERS:
        return _CONTAINERS[kind]
    parameters = inspect.signature(LAYER_TYPES[kind]).parameters
    return {
        name: p.default is inspect.Parameter.empty
        for name, p in parameters.items()
        if name != "shape"
    }


def _own_keys(where: str, kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the keys of a layer of type `kind` with Keras' names (KEY_ALIASES) as convnet
    names them."""
    renamed = {str(key): value for key, value in options.items()}
    for alias, key in KEY_ALIASES.items():
        if alias in renamed and key in _keys(kind):
            if key in renamed:
                raise ConfigError(
                    f"{where} sets both {key!r} and {alias!r}, Keras' name for it: keep one."
                )
            renamed[key] = renamed.pop(alias)
    return renamed


def _check_keys(where: str, kind: str, options: Mapping[str, Any], required: bool) -> None:
    allowed = _keys(kind)
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            choices = ", ".join(allowed) or "none besides type and name"
            raise ConfigError(f"{where} has unknown key {key!r}{hint}: allowed keys are {choices}.")
    if required:
        for key, is_required in allowed.items():
            if is_required and key not in options:
                raise ConfigError(f"{where} needs the key {key!r}, e.g. {_example(kind)}.")


def _example(kind: str) -> str:
    examples = {
        "conv": "{type: conv, filters: 32, kernel_size: 3}",
        "dense": "{type: dense, units: 64}",
        "linear": "{type: linear, units: 64}",
        "activation": "{type: activation, activation: relu}",
        "residual": "{type: residual, layers: [{type: conv, filters: 64, kernel_size: 3, "
        "padding: same}]}",
    }
    return examples.get(kind, f"{{type: {kind}}}")


def _parse(
    where: str, index: int, spec: object, conv_defaults: Mapping[str, Any], names: set[str]
) -> tuple[str, str, dict[str, Any]]:
    """Return (type, module name, keys) of the layer at `where` (`layers[index]`, or
    `layers[3].layers[index]` in a residual body), or raise naming what is wrong."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(
            f"{where}={spec!r} is not allowed: give a mapping with a `type`, e.g. "
            f"{_example('conv')}."
        )
    options = {str(key): value for key, value in spec.items()}
    kind = options.pop("type")
    if kind not in TYPES:
        raise ConfigError(f"{where}.type={kind!r} is not allowed: use one of {', '.join(TYPES)}.")
    options = _own_keys(where, kind, options)
    name = str(options.pop("name", f"{index}_{kind}"))
    if not _NAME.fullmatch(name) or name in names:
        raise ConfigError(
            f"{where}.name={name!r} is not allowed: use letters, digits, '_' or '-' (no dots), "
            "and a name no other layer of the stack has."
        )
    if kind == "conv":
        options = {**conv_defaults, **options}
    _check_keys(f"{where} ({kind})", kind, options, required=True)
    layers = options.get("layers")
    if kind == "residual" and (
        isinstance(layers, str | Mapping) or not isinstance(layers, Sequence) or not layers
    ):
        raise ConfigError(
            f"{where}.layers={layers!r} is not allowed: give the residual body as a non-empty "
            f"list of layers, e.g. {_example('residual')}."
        )
    return kind, name, options


class _BodyOnly(Residual):
    """A residual layer while its body is built: body(x) alone, so each inner layer's shape
    is inferred (and a body that changes the shape is reported) before anything is summed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return body(x)."""
        return self.body(x)


class CustomNet(nn.Module):
    """A stack of layers from a list of mappings, each with a `type` and Keras-style keys.

    layers: e.g. [{type: conv, filters: 32, kernel_size: 3, activation: relu},
        {type: max_pool}, {type: flatten}, {type: dense, units: 64}]. Types: conv, max_pool,
        avg_pool, global_avg_pool, global_max_pool, batch_norm, group_norm, layer_norm,
        activation, dropout, flatten, dense (or linear), scale ({type: scale, factor: 0.125}),
        and residual: {type: residual,
        layers: [...]} computes x + body(x), its body built from its own list of layers like
        the stack (it must keep the shape; residuals may nest). Input sizes are inferred.
        Each layer is the module `layers.<name>`, where name is the layer's `name` key or
        `<index>_<type>` (`layers.0_conv`), so TensorBoard tags stay predictable; a residual
        body's layers are named the same way under `body` (`layers.3_residual.body.0_conv`).
    conv_defaults: keys every conv layer (residual bodies' too) takes unless it sets them, e.g.
        {padding: same, norm: batch, activation: relu}. Without them a conv follows Keras'
        Conv2D: padding valid, no norm, no activation.
    A classifier (flatten if needed, then a dense layer to num_classes) is appended when the
    stack's output is not already num_classes values.
    """

    # Whether building warns about convolutions that see one pixel (not for probes).
    _warns = True

    def __init__(
        self,
        layers: Sequence[Mapping[str, Any]],
        in_channels: int,
        num_classes: int,
        image_size: int | Sequence[int],
        conv_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        self.num_classes = positive_int(num_classes, "num_classes")
        self.image_size = to_pair(image_size, "image_size")
        specs, defaults = list(layers), _own_keys("conv_defaults", "conv", conv_defaults or {})
        _check_keys("conv_defaults", "conv", defaults, required=False)
        self.layers = nn.Sequential()
        # Output shape (without the batch) of each layer, in order.
        self.shapes: list[Shape] = []
        shape: Shape = (self.in_channels, *self.image_size)

        def suggest() -> tuple[int, int] | None:
            return self._smallest_image_size(specs, defaults)

        for index, spec in enumerate(specs):
            where = f"layers[{index}]"
            shape = self._build(self.layers, where, index, spec, shape, defaults, suggest)
            self.shapes.append(shape)
        if shape != (self.num_classes,):
            self._append_classifier(shape, suggest)
        if self._warns:
            warn_one_pixel_convolutions(self, self.in_channels, self.image_size, "CustomNet")

    def _build(
        self,
        container: nn.Sequential,
        where: str,
        index: int,
        spec: object,
        shape: Shape,
        defaults: dict[str, Any],
        suggest: Callable[[], tuple[int, int] | None],
    ) -> Shape:
        """Add the layer `spec` to `container` (the stack or a residual body, the last layer
        built so far); return its output shape (without batch)."""
        kind, name, options = _parse(where, index, spec, defaults, set(container._modules))
        if kind == "residual":
            body = nn.Sequential()
            # Until the body is complete the layer runs it alone, so the stack's output is
            # always the output of the last layer built, wherever it lies.
            container.add_module(name, _BodyOnly(body))
            output = shape
            for number, layer in enumerate(options["layers"]):
                inner = f"{where}.layers[{number}]"
                output = self._build(body, inner, number, layer, output, defaults, suggest)
            if output != shape:
                raise ValueError(
                    f"{where} (residual): its layers turn {shape} into {output}; a residual "
                    "body must keep the shape: same filters, padding same, strides 1."
                )
            container.add_module(name, Residual(body))
            return shape
        try:
            module = LAYER_TYPES[kind](shape, **options)
        except ValueError as error:
            raise ConfigError(f"{where} ({kind}): {error}") from error
        container.add_module(name, module)
        return self._output_shape(f"{where} ({kind})", suggest)

    def _output_shape(self, layer: str, suggest: Callable[[], tuple[int, int] | None]) -> Shape:
        """Return the stack's output shape (without batch), naming `layer` if it cannot."""
        # On the meta device; names the layer where the feature map vanishes, if it does.
        # The stack is checked for one-pixel convolutions once, when it is complete.
        output = check_image_size(
            self,
            self.in_channels,
            self.image_size,
            model_name="CustomNet",
            smallest=suggest,
            warn_one_pixel=False,
        )
        if output is None:
            raise ValueError(f"{layer} cannot run on the meta device to infer its shape.")
        return tuple(output[1:])

    def _append(
        self, name: str, module: nn.Module, suggest: Callable[[], tuple[int, int] | None]
    ) -> Shape:
        """Add `module` as layers.<name>; return the stack's output shape (without batch)."""
        self.layers.add_module(name, module)
        self.shapes.append(self._output_shape(f"layers.{name}", suggest))
        return self.shapes[-1]

    def _append_classifier(
        self, shape: Shape, suggest: Callable[[], tuple[int, int] | None]
    ) -> None:
        index = len(self.layers)
        if len(shape) != 1:
            shape = self._append(self._free_name(f"{index}_flatten"), flatten(shape), suggest)
            index += 1
        name = self._free_name(f"{index}_dense")
        log.info(
            "CustomNet: appending layers.%s, a dense layer to %d classes", name, self.num_classes
        )
        self._append(name, dense(shape, self.num_classes), suggest)

    def _free_name(self, name: str) -> str:
        # A layer's own `name:` may already be what the appended layer would be called.
        while name in self.layers._modules:
            name += "_appended"
        return name

    def _smallest_image_size(
        self, specs: list[Mapping[str, Any]], defaults: dict[str, Any]
    ) -> tuple[int, int] | None:
        """Return the smallest image size the whole stack takes (None if none up to 8192).

        Layers after a failing one are not built yet, so the whole stack is built again on
        larger images, and the size is searched on its feature-map part (the dense layers
        are built for whatever size the feature maps end with).
        """
        side = max(self.image_size)
        while side < LARGEST_SIDE:
            side = min(2 * side, LARGEST_SIDE)
            try:
                with torch.device("meta"):
                    probe = _Probe(specs, self.in_channels, self.num_classes, side, defaults)
            except ValueError:
                continue
            spatial = [i for i, shape in enumerate(probe.shapes) if len(shape) == 3]
            feature_maps = nn.Sequential(*list(probe.layers)[: spatial[-1] + 1] if spatial else [])
            return smallest_image_size(feature_maps, self.in_channels, (side, side))
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (B, num_classes) for images (B, in_channels, H, W)."""
        return self.layers(x)


class _Probe(CustomNet):
    """A CustomNet built only to measure shapes: a failure does not search for image sizes."""

    _warns = False

    def _smallest_image_size(
        self, specs: list[Mapping[str, Any]], defaults: dict[str, Any]
    ) -> tuple[int, int] | None:
        return None
