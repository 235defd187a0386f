"""Picture tags: `<stage>/<kind>[/<part>]`, the same in every model family.

    stage1/filters                       the first conv of stage 1, strongest filters first
    stage1/filters/change                the same filters, minus their weights at the start
    stage2/feature_maps/classes_0-3      stage 2's output for the fixed images of classes 0..3
    stage3/filter_response               inputs that excite stage 3's channels
    stage3/gradcam/classes_0-5           Grad-CAM at stage 3's output
    stem/filters                         a ResNet's stem conv (the network's first conv,
                                         when no stage starts with it)
    mistakes/confusion_matrix            pictures of the whole network have no stage
    mistakes/misclassified/1-8

`stage` is the stage's name from the network's declared stages (convnet.models.stages:
`stage1`..`stageN`, counted alike in every family), `stem` for convs before the first
stage, `head` for layers after the last (the classifier), and a configured layer that
is none of these keeps its module name (`features.3/filters`). The module path is
in every picture's description and display name, never in its tag, so two
architectures of one sweep share tags and compare picture by picture.

TensorBoard's tag filter is a regular expression: `^stage3/` shows one stage's pictures
together (the anchors keep stage3 from matching stage30), `/filters` one kind across
stages, `feature_maps/classes_0` one page of every stage. Time Series groups its cards
by the part before the first `/`, so each stage is one group.
"""

from __future__ import annotations

from collections.abc import Sequence

STEM = "stem"  # convs before the first stage (a ResNet's conv1)
HEAD = "head"  # layers after the last stage (the classifier)


def picture_tag(stage: str, kind: str, part: str | None = None) -> str:
    """Return the tag `<stage>/<kind>[/<part>]` (see the module docstring)."""
    return "/".join(p for p in (stage, kind, part) if p)


def class_part(labels: Sequence[int]) -> str:
    """Return the part naming a page of images by its classes: `classes_0-3`, `classes_7`
    (labels below 0, images given by the user, are `image`)."""
    known = [label for label in labels if label >= 0]
    if not known:
        return "image"
    low, high = min(known), max(known)
    return f"classes_{low}" if low == high else f"classes_{low}-{high}"


def range_part(first: int, last: int) -> str:
    """Return the part naming a page of ranked items, 1-based: `1-8`, `9`."""
    return f"{first + 1}" if first == last else f"{first + 1}-{last + 1}"


def unique_parts(parts: Sequence[str]) -> list[str]:
    """Return `parts` with repeats numbered (`classes_0`, `classes_0_2`), so pages of the
    same classes (several images per class) get tags of their own."""
    seen: dict[str, int] = {}
    unique = []
    for part in parts:
        seen[part] = seen.get(part, 0) + 1
        unique.append(part if seen[part] == 1 else f"{part}_{seen[part]}")
    return unique


def split_pages(count: int, most: int) -> list[range]:
    """Return `count` items split into as few pages of at most `most` as can hold them,
    of sizes differing by one at most (10 by 4: 4, 3, 3), first pages largest."""
    number = max(1, -(-count // most))
    size, extra = divmod(count, number)
    starts = [index * size + min(index, extra) for index in range(number + 1)]
    return [range(starts[i], starts[i + 1]) for i in range(number)]
