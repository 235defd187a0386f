"""Mistakes: confusion counts, their picture, the most confident errors, per-class accuracy."""

import pytest
import torch

from convnet.callbacks.confusion import (
    VIRIDIS_TABLE,
    compact,
    confusion_counts,
    confusion_description,
    confusion_layout,
    confusion_matrix_picture,
)
from convnet.callbacks.mistakes import (
    Mistakes,
    MistakeTracker,
    misclassified_pictures,
    per_class_accuracy,
)
from convnet.callbacks.render import MAX_SIZE, text_width
from convnet.data.shapes import CLASSES as SHAPES

CLASSES = ["cat", "dog", "bird"]
PREDICTED = torch.tensor([0, 0, 1, 2, 2, 2])
TRUE = torch.tensor([0, 1, 1, 2, 2, 0])
# Counted by hand: row = true, column = predicted.
EXPECTED = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 2]])


def test_counts_match_a_hand_made_case() -> None:
    assert confusion_counts(PREDICTED, TRUE, 3).tolist() == EXPECTED.tolist()


def test_each_cell_is_coloured_by_its_share_of_the_true_class() -> None:
    picture = confusion_matrix_picture(EXPECTED, CLASSES)
    layout = confusion_layout(CLASSES, EXPECTED)
    top = 0
    shares = EXPECTED.float() / EXPECTED.sum(dim=1, keepdim=True)
    for row in range(3):
        for column in range(3):
            x0, y0, _, _ = layout.cell_box(row, column)
            pixel = picture[:, top + y0 + 1, x0 + 1]  # a corner, clear of the number
            expected = VIRIDIS_TABLE[round(shares[row, column].item() * 255)]
            torch.testing.assert_close(pixel, expected, atol=1 / 255, rtol=0)


def test_ten_classes_get_names_counts_and_a_colour_bar_within_the_card() -> None:
    counts = torch.full((10, 10), 7) + torch.eye(10, dtype=torch.long) * 493  # 500 a class
    counts[0, 1] = 20
    layout = confusion_layout(SHAPES, counts)
    assert layout.names and layout.numbers
    assert layout.width >= text_width("500") + 2 and layout.height >= 22
    picture = confusion_matrix_picture(counts, SHAPES)
    assert picture.shape[2] <= MAX_SIZE[0] and picture.shape[1] <= MAX_SIZE[1]
    # The colour bar under the matrix runs from viridis' first colour to its last.
    _, _, _, bottom = layout.cell_box(9, 0)
    bar = picture[:, bottom + 8, layout.left + 1 : layout.cell_box(0, 9)[2] - 1]
    torch.testing.assert_close(bar[:, 0], VIRIDIS_TABLE[0], atol=2 / 255, rtol=0)
    torch.testing.assert_close(bar[:, -1], VIRIDIS_TABLE[-1], atol=3 / 255, rtol=0)
    description = confusion_description(counts, SHAPES, "validation")
    assert "row-normalised" in description and "count in each cell" in description
    assert "circle → ring: 20;" in description and "5643 validation images" in description


def test_counts_are_compact_and_class_names_left_out_when_too_many_to_read() -> None:
    assert [compact(n) for n in (999, 1234, 12345)] == ["999", "1.2k", "12k"]
    many = confusion_layout([f"class {i}" for i in range(100)])
    assert not many.names and not many.numbers
    counts = torch.eye(100, dtype=torch.long)
    picture = confusion_matrix_picture(counts, [str(i) for i in range(100)])
    assert picture.shape[2] <= MAX_SIZE[0] and picture.shape[1] <= MAX_SIZE[1]
    assert "too many to name" in confusion_description(counts, list(map(str, range(100))), "x")


def test_a_misclassified_label_is_never_cut() -> None:
    names = [*SHAPES, "a much longer class name"]
    pages = misclassified_pictures(
        torch.rand(12, 3, 8, 8), torch.arange(12) % 11, torch.full((12,), 10),
        torch.full((12,), 0.5), names,
    )  # fmt: skip
    widest = text_width("a much longer class name 0.50")
    for _, picture in pages:
        assert picture.shape[2] >= widest and picture.shape[2] <= MAX_SIZE[0]
        assert picture.shape[1] <= MAX_SIZE[1]
        # The rightmost column of pixels is background: no label runs off the edge.
        assert (picture[:, :, -1] == 1).all()


def test_the_tracker_keeps_the_most_confident_mistakes_across_batches() -> None:
    tracker = MistakeTracker(num_classes=3, num_images=2, device=torch.device("cpu"))
    logits = torch.tensor([[5.0, 0, 0], [0, 9.0, 0], [0, 0, 1.0]])  # true 1, 0, 2
    tracker.update(logits, torch.tensor([1, 0, 2]), torch.arange(3.0)[:, None, None, None])
    tracker.update(torch.tensor([[0, 0, 7.0]]), torch.tensor([0]), torch.full((1, 1, 1, 1), 9.0))
    inputs, true, predicted, confidence = tracker.mistakes()
    assert true.tolist() == [0, 0] and predicted.tolist() == [1, 2]  # 9.0 beats 7.0
    assert inputs.flatten().tolist() == [1.0, 9.0]
    assert confidence[0] > confidence[1]
    assert tracker.counts().tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 1]]


def test_per_class_accuracy_is_the_diagonal_over_each_row() -> None:
    accuracy = per_class_accuracy(torch.tensor([[3, 1], [0, 0]]))
    assert accuracy[0] == pytest.approx(0.75) and torch.isnan(accuracy[1])


def test_the_pictures_of_a_whole_validation_pass(context) -> None:
    callback = Mistakes(num_images=4)
    pictures = callback.pictures(context)
    tags = [p.tag for p in pictures]
    assert tags[0] == "mistakes/confusion_matrix" and tags[1].startswith(
        "mistakes/misclassified/1-"
    )
    assert all(p.description for p in pictures)
    assert callback.accuracy is not None and callback.accuracy.shape == (10,)
