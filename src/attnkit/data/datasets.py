"""Dataset builders for the image-classification jobs: the registry, :func:`build` and :func:`build_from_config`.

``digits`` (embedded, default), ``fashion-mnist``, ``cifar10``, ``cifar100``, ``stl10`` and ``image-folder``;
each family's builder lives in its own module (:mod:`.digits`, :mod:`.fashion_mnist`, :mod:`.cifar`,
:mod:`.image_folder`) and registers here.

Small datasets are held in memory as tensors (decoded once with numpy) and augmented in tensor space,
so quick runs do not pay for PIL decoding. Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._registry import Registry
from ._common import DataBundle
from .cifar import build_stl10, cifar_builder
from .digits import build_digits
from .fashion_mnist import FMNIST_SYSTEM_DIR, build_fashion_mnist
from .image_folder import build_image_folder

__all__ = ["DATASETS", "build", "build_from_config", "list_datasets", "FMNIST_SYSTEM_DIR"]

DATASETS: Registry[Callable[..., DataBundle]] = Registry("dataset")
"""Dataset builders by name; a builder takes :func:`build`'s keywords and returns a :class:`DataBundle`."""
DATASETS.add("digits", build_digits)
DATASETS.add("fashion-mnist", build_fashion_mnist, aliases=("fashion_mnist", "fmnist"))
DATASETS.add("cifar10", cifar_builder(10), aliases=("cifar-10",))
DATASETS.add("cifar100", cifar_builder(100), aliases=("cifar-100",))
DATASETS.add("stl10", build_stl10)
DATASETS.add("image-folder", build_image_folder, aliases=("image_folder", "imagenet"))


def list_datasets() -> list[str]:
    """Names accepted by :func:`build` (sorted; aliases such as ``fmnist`` are accepted too)."""
    return DATASETS.names()


def build(
    name: str = "digits",
    *,
    data_dir: str | os.PathLike | None = None,
    train_subset: int | None = None,
    val_split: int = 0,
    download: bool = False,
    seed: int = 0,
    augment: bool = True,
    **kwargs: Any,
) -> DataBundle:
    """Build a dataset bundle (train/val/test) with the standard augmentation of that dataset.

    Args:
        name: ``digits`` (sklearn's 8×8 digits, embedded, the default), ``fashion-mnist``, ``cifar10``,
            ``cifar100``, ``stl10`` or ``image-folder``.
        data_dir: where to look first (Fashion-MNIST also looks in ``/usr/share/datasets/fashion-mnist``).
        train_subset: keep a seeded, class-stratified subset of this many training images.
        val_split: hold out this many training images (seeded, stratified) as ``val``; 0 (the papers'
            protocol) selects on the test set.
        download: allow torchvision to download (never implicit).
        seed: seed of the subset/validation draws.
        augment: training augmentation on (False: normalisation only).
        **kwargs: builder options: ``test_subset`` (fashion-mnist: stratified test subset, fixed seed 0),
            ``img_size`` (image-folder, default 224).

    Returns:
        :class:`DataBundle`. Augmentations: digits pad-1 crop; Fashion-MNIST pad-2 crop + flip; CIFAR pad-4
        crop + flip (padding in [0, 1] space before normalisation); STL-10 32×32 crops of the 96×96
        train images, tested at 96×96 (the group's official scripts); image-folder RandomResizedCrop + flip.

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad subset sizes.
        DatasetNotFoundError: files missing; the message says where it looked and how to get them.
        DatasetFormatError: a file is there but cannot be decoded; the message names it and the format.
    """
    return DATASETS.get(name)(
        data_dir=data_dir,
        train_subset=train_subset,
        val_split=val_split,
        download=download,
        seed=seed,
        augment=augment,
        **kwargs,
    )


def build_from_config(
    config: Any, *, augment: bool | None = None, download: bool | None = None
) -> DataBundle:
    """:func:`build` from any config object with attnkit's data fields.

    Reads ``dataset``, ``data_dir``, ``train_subset``, ``test_subset``, ``val_split``, ``seed``,
    ``augment`` and ``download`` where the config has them (``TrainConfig``, the search
    ``PipelineConfig``, ...); missing fields take :func:`build`'s defaults.

    Args:
        config: a dataclass (or any object) with a ``dataset`` attribute.
        augment: overrides ``config.augment`` (evaluation builds with ``augment=False``).
        download: overrides ``config.download``.

    Returns:
        :class:`DataBundle`.

    Raises:
        ValueError, DatasetNotFoundError: as :func:`build`.
    """

    def get(name: str, default: Any = None) -> Any:
        return getattr(config, name, default)

    kw: dict[str, Any] = {}
    if get("test_subset") is not None:
        kw["test_subset"] = get("test_subset")
    return build(
        get("dataset"),
        data_dir=get("data_dir"),
        train_subset=get("train_subset"),
        val_split=get("val_split", 0) or 0,
        download=bool(get("download", False) if download is None else download),
        seed=get("seed", 0),
        augment=bool(get("augment", True) if augment is None else augment),
        **kw,
    )
