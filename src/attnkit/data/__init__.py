"""Dataset builders: ``attnkit.data.build(name, ...)`` for digits, Fashion-MNIST, CIFAR-10/100, STL-10 and
image folders, plus the samplers the training engine uses."""

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
