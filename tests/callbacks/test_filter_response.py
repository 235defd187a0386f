"""Gradient ascent on the pre-activation, from the image that excites a channel most: every
channel alive on real images reaches more than its mean on them; dead ones say so."""

import torch
import torch.nn.functional as F

from convnet.callbacks import FilterResponse
from convnet.callbacks.filter_response import (
    maximise_channels,
    real_activity,
    stage_signals,
    tile_label,
)
from convnet.callbacks.state import left_as_found
from convnet.models import ResNet


def trained(network, datamodule, steps: int = 40):
    """Return `network` after `steps` SGD steps on the shapes training images."""
    batches = [(datamodule.transform(x, False), y) for x, y in datamodule.train_dataloader()]
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
    network.train()
    for step in range(steps):
        images, labels = batches[step % len(batches)]
        optimizer.zero_grad()
        F.cross_entropy(network(images), labels).backward()
        optimizer.step()
    return network


def test_every_channel_alive_on_real_images_reaches_more_than_its_real_mean(
    small_vgg, context
) -> None:
    trained(small_vgg, context.datamodule)
    callback = FilterResponse(
        layers=["features.4", "features.7"], channels=list(range(16)), steps=8
    )  # stage2 and stage3, every one of their 16 channels
    with left_as_found(small_vgg):
        responses = callback.responses(context)
        samples = context.samples(per_class=1, seed=0)
        real = {
            tag: stage_signals(
                small_vgg, r.module, small_vgg.get_submodule(r.module), samples.inputs
            )[1]
            for tag, r in responses.items()
        }
    assert list(responses) == ["stage2", "stage3"]
    for tag, response in responses.items():
        # The channels' activity on real images, from the layer's own output.
        mean, peak = real[tag].mean(dim=(0, 2, 3)), real[tag].amax(dim=(0, 2, 3))
        alive = peak > 0
        assert alive.sum() >= 8, (tag, peak)  # a trained net: most channels fire
        assert (response.reached[alive] > mean[alive]).all(), (tag, response.reached, mean)


def test_the_ascent_follows_the_pre_activation_where_the_relu_is_flat(small_vgg) -> None:
    layer = small_vgg.features[4]  # stage2's ReLU
    noise = 0.1 * torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with left_as_found(small_vgg), torch.no_grad():
        signal, output = stage_signals(small_vgg, "features.4", layer, noise)
        reference = small_vgg.features[:4](noise)  # the conv output, by slicing
    torch.testing.assert_close(signal, reference)
    torch.testing.assert_close(F.relu(signal), output)
    assert (signal < 0).any()  # where the ReLU gives no gradient, the signal still has one


def test_a_residual_stage_is_maximised_before_its_last_relu() -> None:
    torch.manual_seed(0)
    network = ResNet("basic", [1, 1], in_channels=3, num_classes=10, image_size=32)
    images = torch.randn(2, 3, 32, 32)
    with left_as_found(network), torch.no_grad():
        signal, output = stage_signals(network, "layer2", network.layer2, images)
        block = network.layer2[0]
        stem = network.relu(network.bn1(network.conv1(images)))
        x = network.layer1(stem)
        body = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
        reference = body + block.downsample(x)  # out + identity, before the block's relu
    torch.testing.assert_close(signal, reference)
    torch.testing.assert_close(F.relu(signal), output)


def test_the_same_weights_give_the_same_picture(small_vgg) -> None:
    layer = small_vgg.features[4]
    start = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with left_as_found(small_vgg):
        first = maximise_channels(small_vgg, "features.4", layer, [1, 2], start, steps=4, seed=3)
        torch.manual_seed(123)  # the global RNG plays no part
        again = maximise_channels(small_vgg, "features.4", layer, [1, 2], start, steps=4, seed=3)
    torch.testing.assert_close(first, again)


def test_a_dead_channel_is_labelled_dead_and_a_live_one_with_its_figures() -> None:
    output = torch.zeros(3, 2, 4, 4)
    output[0, 1] = 2.0  # channel 1 fires on image 0 only; channel 0 never does
    activity = real_activity(output - 1, output, top_k=1)
    assert "DEAD" in tile_label(0, 0.0, activity)
    assert tile_label(1, 5.0, activity) == "ch 1\n5 vs 0.67"
    assert activity.favourite[1] == 0
    assert activity.ranking.tolist() == [1, 0]


def test_the_callback_draws_the_stages_after_the_first_by_stage_name(context) -> None:
    callback = FilterResponse(filters_per_layer=2, steps=2)
    with left_as_found(context.network):
        pictures = callback.pictures(context)
    assert [p.tag for p in pictures] == ["stage2/filter_response", "stage3/filter_response"]
    assert all("features." in p.description and "DEAD" in p.description for p in pictures)
