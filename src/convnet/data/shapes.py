"""Shapes: a procedural 10-class RGB data set, generated deterministically from a seed.

Each image holds one shape (its class) with a random colour, size, position and rotation
on a random two-colour gradient background, plus pixel noise. Position, rotation and
colour vary so much that no single pixel says much about the class: logistic regression
on raw pixels stays near chance, while a small CNN, which sees local edges and textures
wherever they are, learns the set in a couple of minutes on a laptop CPU.

Shapes are drawn as inside/outside tests in each image's own rotated and scaled frame,
on a grid `supersample` times finer than the image, then averaged down (anti-aliasing).
Everything is vectorised over all images of a class, so 30,000 images take about a
second on 2 CPU cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from convnet.checks import non_negative_int, positive_int
from convnet.data.splits import Splits, TensorSplit

# Shape tests take (x, y) in the shape's own frame, where the shape fits the unit disk.
ShapeTest = Callable[[Tensor, Tensor], Tensor]


def _radius(x: Tensor, y: Tensor) -> Tensor:
    return torch.sqrt(x * x + y * y)


def _box(x: Tensor, y: Tensor) -> Tensor:
    return torch.maximum(x.abs(), y.abs())


def _triangle(x: Tensor, y: Tensor) -> Tensor:
    # Equilateral triangle with circumradius 0.95: inside all three edge half-planes.
    inside = torch.ones_like(x, dtype=torch.bool)
    for k in range(3):
        angle = -math.pi / 2 + k * 2 * math.pi / 3
        inside &= x * math.cos(angle) + y * math.sin(angle) < 0.475
    return inside


def _star(x: Tensor, y: Tensor) -> Tensor:
    # Five points: the allowed radius is a triangle wave over the angle.
    phase = torch.frac((torch.atan2(y, x) + math.pi) * 5 / (2 * math.pi))
    return _radius(x, y) < 0.95 * (0.42 + 0.58 * (2 * phase - 1).abs())


def _cross(x: Tensor, y: Tensor) -> Tensor:
    ax, ay = x.abs(), y.abs()
    return ((ax < 0.24) & (ay < 0.85)) | ((ay < 0.24) & (ax < 0.85))


SHAPES: dict[str, ShapeTest] = {
    "circle": lambda x, y: _radius(x, y) < 0.85,
    "ring": lambda x, y: (_radius(x, y) < 0.9) & (_radius(x, y) > 0.55),
    "square": lambda x, y: _box(x, y) < 0.68,
    "frame": lambda x, y: (_box(x, y) < 0.72) & (_box(x, y) > 0.4),
    "triangle": _triangle,
    "cross": _cross,
    "star": _star,
    "stripes": lambda x, y: (_radius(x, y) < 0.9) & (torch.sin(x * 3 * math.pi) > 0),
    "checker": lambda x, y: (
        (_radius(x, y) < 0.9) & (torch.sin(x * 2.5 * math.pi) * torch.sin(y * 2.5 * math.pi) > 0)
    ),
    "crescent": lambda x, y: (_radius(x, y) < 0.85) & (_radius(x - 0.45, y) > 0.65),
}
CLASSES = list(SHAPES)


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def _colours(generator: torch.Generator, n: int, min_distance: float) -> tuple[Tensor, Tensor]:
    """Return background and foreground RGB colours (n, 3) in [0, 1], at least
    `min_distance` apart (Euclidean), so the shape is always visible."""
    background = torch.rand(n, 3, generator=generator)
    foreground = torch.rand(n, 3, generator=generator)
    offset = foreground - background
    distance = offset.norm(dim=1, keepdim=True).clamp_min(1e-6)
    # Push colours that are too close apart along their difference, reflecting off [0, 1].
    pushed = background + offset / distance * min_distance
    pushed = torch.where(pushed > 1, pushed - 2 * (pushed - 1), pushed).clamp(0, 1)
    foreground = torch.where(distance < min_distance, pushed, foreground)
    return background, foreground


# Images drawn per pass: the fine masks of a chunk stay in cache, which is ~4x faster
# than drawing all images at once.
_CHUNK = 512


def _coverage(
    labels: Tensor, centre: Tensor, scale: Tensor, angle: Tensor, fine: int, supersample: int
) -> Tensor:
    """Return the fraction (n, 1, fine/supersample, fine/supersample) of each pixel that
    lies inside image i's shape."""
    axis = (torch.arange(fine) + 0.5) / fine * 2 - 1
    v, u = torch.meshgrid(axis, axis, indexing="ij")  # (fine, fine): rows are y
    mask = torch.zeros(labels.shape[0], 1, fine, fine)
    for index, inside in enumerate(SHAPES.values()):
        chosen = (labels == index).nonzero().squeeze(1)
        if chosen.numel() == 0:
            continue
        du = u[None] - centre[chosen, 0, None, None]  # (n_class, fine, fine)
        dv = v[None] - centre[chosen, 1, None, None]
        cos = torch.cos(angle[chosen])[:, None, None]
        sin = torch.sin(angle[chosen])[:, None, None]
        s = scale[chosen][:, None, None]
        mask[chosen, 0] = inside((du * cos + dv * sin) / s, (dv * cos - du * sin) / s).float()
    return torch.nn.functional.avg_pool2d(mask, supersample)


def render_shapes(
    labels: Tensor,
    generator: torch.Generator,
    image_size: int = 32,
    supersample: int = 2,
    noise: float = 0.06,
) -> Tensor:
    """Return uint8 images (N, 3, image_size, image_size), one shape of class `labels[i]`
    in image i, drawn with random pose and colours from `generator`."""
    n = labels.shape[0]
    # Pose in image coordinates, where the image spans [-1, 1] on both axes.
    centre = torch.stack([_uniform(generator, n, -0.4, 0.4) for _ in range(2)], dim=1)
    scale = _uniform(generator, n, 0.3, 0.6)
    angle = _uniform(generator, n, 0, 2 * math.pi)
    background, foreground = _colours(generator, n, min_distance=0.45)
    background_far = (background + _uniform(generator, n, -0.3, 0.3)[:, None]).clamp(0, 1)
    gradient_angle = _uniform(generator, n, 0, 2 * math.pi)

    grid = (torch.arange(image_size) + 0.5) / image_size * 2 - 1
    gv, gu = torch.meshgrid(grid, grid, indexing="ij")
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        coverage = _coverage(
            labels[part],
            centre[part],
            scale[part],
            angle[part],
            image_size * supersample,
            supersample,
        )  # (n, 1, H, W)
        cos, sin = torch.cos(gradient_angle[part]), torch.sin(gradient_angle[part])
        along = (gu * cos[:, None, None] + gv * sin[:, None, None] + 1.5) / 3  # (n, H, W)
        near = background[part, :, None, None]
        back = near + (background_far[part, :, None, None] - near) * along[:, None]
        image = back + (foreground[part, :, None, None] - back) * coverage
        image += torch.randn(image.shape, generator=generator) * noise
        images[part] = image.clamp_(0, 1).mul_(255).round_()
    return images


def make_split(num_images: int, seed: int, image_size: int = 32) -> TensorSplit:
    """Return a class-balanced split of `num_images` shapes generated from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_images) % len(CLASSES)
    labels = labels[torch.randperm(num_images, generator=generator)]
    return TensorSplit(render_shapes(labels, generator, image_size), labels)


class ShapesSource:
    """The built-in procedural data set; nothing to download, the same images per seed."""

    def __init__(
        self,
        num_train: int = 20_000,
        num_val: int = 5_000,
        num_test: int = 5_000,
        image_size: int = 32,
        seed: int = 0,
    ) -> None:
        for key, value in [
            ("num_train", num_train),
            ("num_val", num_val),
            ("image_size", image_size),
        ]:
            positive_int(value, f"data.source.{key}")
        non_negative_int(num_test, "data.source.num_test")  # 0: no test split
        self.sizes = (num_train, num_val, num_test)
        self.image_size = image_size
        self.seed = seed

    def prepare(self) -> None:
        """Nothing to fetch: the images are generated in `load`."""

    def load(self) -> Splits:
        """Return the train/val/test splits; each split has its own derived seed."""
        train, val, test = (
            make_split(size, self.seed * 1000 + offset, self.image_size) if size else None
            for offset, size in enumerate(self.sizes)
        )
        return Splits(train=train, val=val, test=test, classes=list(CLASSES))
