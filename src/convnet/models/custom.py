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

from convnet.checks import ConfigError, positive_int, sequence, to_pair
from convnet.models.shape_check import (
    LARGEST_SIDE,
    failure_of,
    size_error,
    smallest_image_size,
)
from convnet.models.stack_layers import LAYER_TYPES, Residual, Shape, dense, flatten
from convnet.models.stages import infer_stages
from convnet.models.trace import spatial, trace

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


class _Stack:
    """Builds a stack's layers in order, passing one running meta tensor (B, C, H, W) through
    each layer as it is added: its output shape is what the next layer is built for, and a
    layer the images are too small for fails as it is added, named with the image size the
    whole stack needs (`suggest`)."""

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        defaults: dict[str, Any],
        suggest: Callable[[], tuple[int, int] | None],
    ) -> None:
        self.in_channels, self.image_size = in_channels, image_size
        self.defaults, self.suggest = defaults, suggest
        # A batch of 2, as check_image_size passes, so both name the same failures.
        self.x = torch.empty(2, in_channels, *image_size, device="meta")

    @property
    def shape(self) -> Shape:
        """Return the output shape (without batch) of the last layer added."""
        return tuple(self.x.shape[1:])

    def add_all(self, container: nn.Sequential, specs: Sequence[object]) -> list[Shape]:
        """Add the stack's layers to `container` (the network's `layers`); return each one's
        output shape (without batch)."""
        shapes = []
        for index, spec in enumerate(specs):
            self.add(container, "layers", f"layers[{index}]", index, spec)
            shapes.append(self.shape)
        return shapes

    def add(
        self, container: nn.Sequential, path: str, where: str, index: int, spec: object
    ) -> None:
        """Add the layer `spec` (config place `where`) to `container`, the module at `path`."""
        kind, name, options = _parse(where, index, spec, self.defaults, set(container._modules))
        if kind == "residual":
            shape, body = self.shape, nn.Sequential()
            for number, layer in enumerate(options["layers"]):
                self.add(body, f"{path}.{name}.body", f"{where}.layers[{number}]", number, layer)
            if self.shape != shape:
                raise ConfigError(
                    f"{where} (residual): its layers turn {shape} into {self.shape}; a residual "
                    "body must keep the shape: same filters, padding same, strides 1."
                )
            container.add_module(name, Residual(body))  # x + body(x) keeps the running shape
            return
        try:
            module = LAYER_TYPES[kind](self.shape, **options)
        except ValueError as error:
            raise ConfigError(f"{where} ({kind}): {error}") from error
        container.add_module(name, module)
        self.run(module, f"{path}.{name}", f"{where} ({kind})")

    def run(self, module: nn.Module, path: str, where: str) -> None:
        """Pass the running tensor through `module`, or raise naming the layer it fails in."""
        try:
            traced = trace(module, self.x)
        except NotImplementedError as error:
            raise ConfigError(
                f"{where} cannot run on the meta device to infer its shape."
            ) from error
        if traced.error is None:
            self.x = traced.output
            return
        layer, kind, at, reason = failure_of(traced, module, spatial(self.x))
        # The leaf's name inside `module` ("" when module is the leaf), as the network names it.
        failure = (f"{path}.{layer}" if layer else path, kind, at, reason)
        raise size_error("CustomNet", self.image_size, self.in_channels, failure, self.suggest())


def _smallest_image_size(
    specs: list[Mapping[str, Any]],
    in_channels: int,
    image_size: tuple[int, int],
    defaults: dict[str, Any],
) -> tuple[int, int] | None:
    """Return the smallest image size the whole stack takes (None if none up to 8192).

    Layers after a failing one are not built yet, so the whole stack is built again on
    larger images, and the size is searched on its feature-map part (the dense layers
    are built for whatever size the feature maps end with).
    """
    side = max(image_size)
    while side < LARGEST_SIDE:
        side = min(2 * side, LARGEST_SIDE)
        layers = nn.Sequential()
        try:
            with torch.device("meta"):
                shapes = _Stack(in_channels, (side, side), defaults, lambda: None).add_all(
                    layers, specs
                )
        except ValueError:
            continue
        spatial_layers = [i for i, shape in enumerate(shapes) if len(shape) == 3]
        last = spatial_layers[-1] + 1 if spatial_layers else 0
        return smallest_image_size(nn.Sequential(*list(layers)[:last]), in_channels, (side, side))
    return None


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
        specs = sequence(layers, "layers", "[{type: conv, filters: 32, kernel_size: 3}]")
        defaults = _own_keys("conv_defaults", "conv", conv_defaults or {})
        _check_keys("conv_defaults", "conv", defaults, required=False)
        self.layers = nn.Sequential()

        def suggest() -> tuple[int, int] | None:
            return _smallest_image_size(specs, self.in_channels, self.image_size, defaults)

        stack = _Stack(self.in_channels, self.image_size, defaults, suggest)
        # Output shape (without the batch) of each layer, in order.
        self.shapes: list[Shape] = stack.add_all(self.layers, specs)
        if stack.shape != (self.num_classes,):
            self._append_classifier(stack)
        self.feature_info = infer_stages(self, self.in_channels, self.image_size)

    def _append(self, stack: _Stack, name: str, module: nn.Module) -> None:
        """Add `module` as layers.<name>, after the stack's layers."""
        self.layers.add_module(name, module)
        stack.run(module, f"layers.{name}", f"layers.{name}")
        self.shapes.append(stack.shape)

    def _append_classifier(self, stack: _Stack) -> None:
        index = len(self.layers)
        if len(stack.shape) != 1:
            self._append(stack, self._free_name(f"{index}_flatten"), flatten(stack.shape))
            index += 1
        name = self._free_name(f"{index}_dense")
        log.info(
            "CustomNet: appending layers.%s, a dense layer to %d classes", name, self.num_classes
        )
        self._append(stack, name, dense(stack.shape, self.num_classes))

    def _free_name(self, name: str) -> str:
        # A layer's own `name:` may already be what the appended layer would be called.
        while name in self.layers._modules:
            name += "_appended"
        return name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (B, num_classes) for images (B, in_channels, H, W)."""
        return self.layers(x)
