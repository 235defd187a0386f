"""The config keys convnet's code reads or names by their dotted path, each written once.

Errors name a key the way a user types it on the command line (`data.batch_size=0`); the
whole-config check (convnet.config) and the constructor that checks the same value name it
from here, so the two never drift apart.
"""

CKPT_PATH = "ckpt_path"
TRAIN = "train"
SEED = "seed"
OUTPUT_DIR = "paths.output_dir"
SWEEPER_STORAGE = "hydra.sweeper.storage"
BATCH_SIZE = "data.batch_size"
EVAL_BATCH_SIZE = "data.eval_batch_size"
NUM_CLASSES = "data.num_classes"
IN_CHANNELS = "data.in_channels"
IMAGE_SIZE = "data.image_size"
MEAN = "data.mean"
STD = "data.std"
DATA_SOURCE = "data.source"
PRETRAINED = "model.pretrained"
CROP_PADDING = "data.crop_padding"
NUM_WORKERS = "data.num_workers"
FOLD = "data.fold"
LABEL_SMOOTHING = "module.label_smoothing"
