"""Dataset builders and the samplers the training engine uses.

``attnkit.data.build(name, ...)`` builds digits, Fashion-MNIST, CIFAR-10/100, STL-10 and image folders;
``build_from_config`` does so from any config with attnkit's data fields; ``DATASETS`` is the registry a
user adds a builder to. The task data (MovieLens, dialogues, hyperspectral scenes) live in
:mod:`.movielens`, :mod:`.dialogue` and :mod:`.hsi`.
"""

from ._common import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataBundle,
    DatasetFormatError,
    DatasetNotFoundError,
    TensorImageDataset,
)
from .datasets import DATASETS, build, build_from_config, list_datasets
from .samplers import EvalShardSampler, TrainSampler
from .transforms import TensorAugment

__all__ = [
    "build",
    "build_from_config",
    "list_datasets",
    "DATASETS",
    "DataBundle",
    "DatasetNotFoundError",
    "DatasetFormatError",
    "TensorImageDataset",
    "TensorAugment",
    "TrainSampler",
    "EvalShardSampler",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
