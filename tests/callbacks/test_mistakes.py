"""Mistakes: confusion counts, their picture, the most confident errors, per-class accuracy."""

import pytest
import torch

from convnet.callbacks.confusion import (
    VIRIDIS_TABLE,
    confusion_counts,
    confusion_layout,
    confusion_matrix_picture,
)
from convnet.callbacks.mistakes import Mistakes, MistakeTracker, per_class_accuracy

CLASSES = ["cat", "dog", "bird"]
PREDICTED = torch.tensor([0, 0, 1, 2, 2, 2])
TRUE = torch.tensor([0, 1, 1, 2, 2, 0])
# Counted by hand: row = true, column = predicted.
EXPECTED = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 2]])


def test_counts_match_a_hand_made_case() -> None:
    assert confusion_counts(PREDICTED, TRUE, 3).tolist() == EXPECTED.tolist()


def test_each_cell_is_coloured_by_its_share_of_the_true_class() -> None:
    picture = confusion_matrix_picture(EXPECTED, CLASSES)
    layout = confusion_layout(CLASSES)
    matrix_height = layout.top + 3 * layout.cell + 2
    top = picture.shape[1] - matrix_height  # below the caption
    shares = EXPECTED.float() / EXPECTED.sum(dim=1, keepdim=True)
    for row in range(3):
        for column in range(3):
            x0, y0, _, _ = layout.cell_box(row, column)
            pixel = picture[:, top + y0 + 1, x0 + 1]  # a corner, clear of the number
            expected = VIRIDIS_TABLE[round(shares[row, column].item() * 255)]
            torch.testing.assert_close(pixel, expected, atol=1 / 255, rtol=0)


def test_class_names_are_left_out_when_there_are_too_many_to_read() -> None:
    assert confusion_layout(CLASSES).names
    many = confusion_layout([f"class {i}" for i in range(100)])
    assert not many.names and not many.numbers
    picture = confusion_matrix_picture(
        torch.eye(100, dtype=torch.long), [str(i) for i in range(100)]
    )
    assert picture.shape[-1] <= 700


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
    assert {p.tag for p in pictures} == {"mistakes/confusion_matrix", "mistakes/misclassified"}
    assert callback.accuracy is not None and callback.accuracy.shape == (10,)
