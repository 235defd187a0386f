"""Histograms by stage, at the first step of chosen epochs and of the final weights."""

import torch
import torch.nn.functional as F

from convnet.callbacks import Histograms
from tests.callbacks.conftest import read_events


def test_the_final_weights_are_logged_at_the_last_step(small_vgg, fake_trainer, tmp_path) -> None:
    callback = Histograms(every_n_epochs=2)
    trainer, pl_module = fake_trainer(small_vgg)
    optimizer = torch.optim.SGD(small_vgg.parameters(), lr=0.1)
    for step in range(6):  # three epochs of two steps: histograms at steps 0 and 4
        trainer.global_step, trainer.current_epoch = step, step // 2
        if step % 2 == 0:
            callback.on_train_epoch_start(trainer, pl_module)
        F.cross_entropy(small_vgg(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
        callback.on_before_optimizer_step(trainer, pl_module, optimizer)
        optimizer.step()
        optimizer.zero_grad()
    trainer.global_step = 6
    callback.on_train_end(trainer, pl_module)
    trainer.loggers[0].finalize("success")
    events = read_events(tmp_path / "tb")
    tags = set(events.Tags()["histograms"])
    assert "weights/stage1/features.0" in tags and "weights/head/classifier.1" in tags
    assert [h.step for h in events.Histograms("weights/stage3/features.6")] == [0, 4, 6]
    assert [h.step for h in events.Histograms("gradients/stage3/features.6")] == [0, 4]
    final = events.Histograms("weights/stage3/features.6")[-1].histogram_value
    weight = small_vgg.features[6].weight
    assert final.num == weight.numel()
    assert abs(final.sum - weight.sum().item()) < 1e-3  # the weights after the last step
