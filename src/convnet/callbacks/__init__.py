"""Lightning callbacks: what TensorBoard and the terminal show during training.

Each picture is one callback (filters, feature maps, filter responses, Grad-CAM,
mistakes, histograms, embeddings, hyperparameters); `callbacks=default` enables them all.
"""

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, log_pictures
from convnet.callbacks.embeddings import Embeddings
from convnet.callbacks.feature_maps import FeatureMaps
from convnet.callbacks.filter_response import FilterResponse
from convnet.callbacks.filters import FilterImages
from convnet.callbacks.gradcam import GradCAM
from convnet.callbacks.histograms import Histograms
from convnet.callbacks.hparams import HParams
from convnet.callbacks.memory import MemoryMonitor
from convnet.callbacks.mistakes import Mistakes

__all__ = [
    "Embeddings",
    "FeatureMaps",
    "FilterImages",
    "FilterResponse",
    "GradCAM",
    "HParams",
    "Histograms",
    "MemoryMonitor",
    "Mistakes",
    "Picture",
    "PictureCallback",
    "PictureContext",
    "log_pictures",
]
