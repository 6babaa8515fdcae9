"""Training on the user's own data: ``fit(config, train_loader=, val_loader=)``; a ``datasets`` adapter.

Any iterable of ``(x, y)`` batches works as a loader (``x``: ``(N, C, H, W)`` float images, ``y``: ``(N,)``
integer labels), typically a ``torch.utils.data.DataLoader``. :func:`loaders_data` describes such loaders to
the trainer (classes, channels, image size) without reading more than one sample, and
:class:`HFImageDataset` turns a ``datasets.Dataset`` of images and labels into a torch ``Dataset``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["UserData", "loaders_data", "HFImageDataset"]


@dataclass
class UserData:
    """What the trainer needs to know about user loaders (mirrors :func:`attnkit.data.build`'s result).

    ``train``/``val``/``test`` are the loaders' datasets (or the loaders themselves when they have none),
    used for their lengths in logs; ``num_classes``, ``in_chans`` and ``img_size`` size the model.
    """

    name: str
    train: Any
    val: Any
    test: Any
    num_classes: int
    in_chans: int
    img_size: tuple[int, int]
    notes: str


def _first_sample(loader: Iterable) -> tuple[torch.Tensor, Any]:
    """One ``(x, y)`` of the loader: ``dataset[0]`` when it has one (no batch is drawn), else its first batch."""
    ds = getattr(loader, "dataset", None)
    if ds is not None and hasattr(ds, "__getitem__") and hasattr(ds, "__len__") and len(ds) > 0:
        x, y = ds[0][:2]
        return torch.as_tensor(x), y
    x, y = next(iter(loader))[:2]
    return torch.as_tensor(x)[0], y


def _num_classes(loaders: list[Iterable], given: int | None) -> int:
    if given:
        return int(given)
    for ld in loaders:
        ds = getattr(ld, "dataset", None)
        for attr in ("classes", "names"):
            if isinstance(getattr(ds, attr, None), (list, tuple)) and getattr(ds, attr):
                return len(getattr(ds, attr))
        if isinstance(getattr(ds, "num_classes", None), int):
            return int(ds.num_classes)
    raise ValueError(
        "fit(train_loader=...): the number of classes is unknown; set TrainConfig.num_classes (or give the "
        "dataset a 'classes' list or a 'num_classes' attribute)"
    )


def loaders_data(
    train_loader: Iterable, val_loader: Iterable | None, test_loader: Iterable | None, num_classes: int | None
) -> UserData:
    """Describe user loaders for :func:`attnkit.train.fit`.

    Args:
        train_loader: yields ``(x, y)`` training batches.
        val_loader: optional; evaluated every ``eval_every`` epochs as the ``val`` split (``val_*`` columns,
            the best epoch is chosen on it).
        test_loader: optional; evaluated as the ``test`` split (``eval_*`` columns).
        num_classes: ``TrainConfig.num_classes`` (None: the dataset's ``classes``/``names`` list or
            ``num_classes`` attribute).

    Returns:
        A :class:`UserData`.

    Raises:
        ValueError: no evaluation loader, the class count cannot be found, or samples that are not
            ``(C, H, W)`` images.
    """
    if val_loader is None and test_loader is None:
        raise ValueError("fit(train_loader=...) needs val_loader= and/or test_loader= to evaluate on")
    x, _ = _first_sample(train_loader)
    if x.dim() != 3:
        raise ValueError(
            f"fit(train_loader=...): samples must be (C, H, W) images, got shape {tuple(x.shape)}"
        )
    ev = [ld for ld in (val_loader, test_loader) if ld is not None]
    nc = _num_classes([train_loader, *ev], num_classes)

    def ds(ld):
        return None if ld is None else getattr(ld, "dataset", ld)

    sizes = {
        k: len(v)
        for k, v in (("train", ds(train_loader)), ("val", ds(val_loader)), ("test", ds(test_loader)))
        if hasattr(v, "__len__")
    }
    return UserData(
        name="user",
        train=ds(train_loader),
        val=ds(val_loader),
        test=ds(test_loader) if test_loader is not None else ds(val_loader),
        num_classes=nc,
        in_chans=int(x.shape[0]),
        img_size=(int(x.shape[1]), int(x.shape[2])),
        notes=f"user loaders {sizes}",
    )


class HFImageDataset(torch.utils.data.Dataset):
    """A Hugging Face ``datasets.Dataset`` of images and labels as a torch ``Dataset`` of ``(x, y)``.

    Args:
        dataset: a ``datasets.Dataset`` (one split), e.g. ``load_dataset("cifar10", split="train")``.
        image_key: the image column (PIL images, arrays or nested lists; ``(H, W)`` or ``(H, W, C)``
            arrays are moved to ``(C, H, W)``; integer values (0..255) are scaled to [0, 1]).
        label_key: the integer label column.
        transform: optional ``transform(image) -> tensor`` (e.g. a torchvision transform) replacing the
            default conversion.

    Shape:
        ``self[i] -> (x, y)`` with ``x`` of shape ``(C, H, W)`` float32 and ``y`` an ``int``.

    Attributes:
        classes: the label names when the label column is a ``ClassLabel``, else None.

    Raises:
        KeyError: a missing column (the message lists the columns).
    """

    def __init__(
        self,
        dataset: Any,
        image_key: str = "image",
        label_key: str = "label",
        transform: Callable[[Any], torch.Tensor] | None = None,
    ):
        cols = list(getattr(dataset, "column_names", []) or [])
        for k in (image_key, label_key):
            if cols and k not in cols:
                raise KeyError(f"column {k!r} not in the dataset's columns {cols}")
        feature = getattr(dataset, "features", {}).get(label_key) if hasattr(dataset, "features") else None
        self.classes = list(feature.names) if getattr(feature, "names", None) else None
        if transform is None and callable(getattr(dataset, "with_format", None)):
            dataset = dataset.with_format("numpy")  # arrays keep their dtype (uint8 images stay uint8)
        self.dataset, self.image_key, self.label_key = dataset, image_key, label_key
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def _to_tensor(self, img: Any) -> torch.Tensor:
        if self.transform is not None:
            return self.transform(img)
        import numpy as np

        a = np.asarray(img)
        x = torch.from_numpy(a.copy())
        x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)  # (C, H, W)
        return x.float() / 255.0 if np.issubdtype(a.dtype, np.integer) else x.float()  # 0..255 -> [0, 1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row = self.dataset[int(i)]
        return self._to_tensor(row[self.image_key]), int(row[self.label_key])
