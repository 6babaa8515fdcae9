"""Dataset builders and the samplers the training engine uses.

``attnkit.data.build(name, ...)`` builds digits, Fashion-MNIST, CIFAR-10/100, STL-10 and image folders;
``build_from_config`` does so from any config with attnkit's data fields.
"""

from .datasets import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataBundle,
    DatasetNotFoundError,
    TensorImageDataset,
    build,
    list_datasets,
)
from .samplers import EvalShardSampler, TrainSampler
from .transforms import TensorAugment

__all__ = [
    "build",
    "list_datasets",
    "DataBundle",
    "DatasetNotFoundError",
    "TensorImageDataset",
    "TensorAugment",
    "TrainSampler",
    "EvalShardSampler",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
