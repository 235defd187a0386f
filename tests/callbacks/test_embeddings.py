"""The projector opens the newest embeddings of a run."""

from google.protobuf import text_format
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from convnet.callbacks import Embeddings


def test_the_projector_lists_the_newest_embeddings_first(small_vgg, fake_trainer, tmp_path) -> None:
    callback = Embeddings(per_class=2)
    trainer, pl_module = fake_trainer(small_vgg)
    for step in (4, 8, 12):
        trainer.global_step = step
        callback.draw(trainer, pl_module)
    config = text_format.Parse(
        (tmp_path / "tb" / "projector_config.pbtxt").read_text(), ProjectorConfig()
    )
    names = [embedding.tensor_name for embedding in config.embeddings]
    # The projector sorts a run's tensors by name (all else equal) and opens the first.
    assert sorted(names)[0] == "embeddings latest (step 12)"
    assert sorted(names)[1:] == ["embeddings step 00004", "embeddings step 00008"]
    paths = {e.tensor_name: e.tensor_path for e in config.embeddings}
    assert paths["embeddings latest (step 12)"].startswith("00012/")
