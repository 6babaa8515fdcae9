"""attnkit.data: dataset builders, augmentation order, samplers, decode errors of the dataset files."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from attnkit.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    DatasetNotFoundError,
    EvalShardSampler,
    TensorAugment,
    TrainSampler,
    build,
    list_datasets,
)
from attnkit.data.datasets import FMNIST_SYSTEM_DIR

has_fmnist = (FMNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists()


def test_digits_default_fixed_split():
    a, b = build(), build("digits", seed=5)
    assert a.name == "digits" and (a.num_classes, a.in_chans, a.img_size) == (10, 1, (8, 8))
    assert (len(a.train), len(a.test)) == (1437, 360)
    # the train/test split is fixed, independent of the seed
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.train.labels, b.train.labels)
    x, y = a.test[0]
    assert x.shape == (1, 8, 8) and isinstance(y, int)
    assert torch.bincount(a.test.labels).min() >= 35  # stratified: ~36 per class


def test_subset_and_val_split_are_seeded_stratified_and_disjoint():
    a = build("digits", train_subset=500, val_split=100, seed=1)
    b = build("digits", train_subset=500, val_split=100, seed=1)
    c = build("digits", train_subset=500, val_split=100, seed=2)
    assert (len(a.train), len(a.val)) == (500, 100)
    assert torch.equal(a.train.images, b.train.images) and not torch.equal(a.train.images, c.train.images)
    counts = torch.bincount(a.train.labels, minlength=10)
    assert counts.min() >= 45 and counts.max() <= 55
    flat_tr = {tuple(v.flatten().tolist()) for v in a.train.images}
    assert not any(tuple(v.flatten().tolist()) in flat_tr for v in a.val.images[:50])
    with pytest.raises(ValueError, match="train_subset"):
        build("digits", train_subset=0)


def test_unknown_dataset_lists_known():
    with pytest.raises(ValueError, match="digits"):
        build("mnist-9000")
    assert {"digits", "fashion-mnist", "cifar10", "cifar100", "image-folder"} <= set(list_datasets())


def test_missing_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="--download"):
        build("cifar10", data_dir=tmp_path)


def test_missing_fmnist_message(tmp_path, monkeypatch):
    monkeypatch.setattr("attnkit.data.fashion_mnist.FMNIST_SYSTEM_DIR", tmp_path / "nope")
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as e:
        build("fashion-mnist", data_dir=tmp_path)
    assert str(tmp_path) in str(e.value) and "--download" in str(e.value)


@pytest.mark.skipif(not has_fmnist, reason="Debian dataset-fashion-mnist files not installed")
def test_fashion_mnist_from_debian_files():
    d = build("fashion-mnist", train_subset=1000, test_subset=500)
    assert (len(d.train), len(d.test), d.img_size, d.in_chans) == (1000, 500, (28, 28), 1)
    assert abs(d.train.images.mean().item() - 0.2860) < 0.01  # near the normalisation constant (60k mean)
    x, _ = d.test[0]
    assert x.shape == (1, 28, 28)


def test_pad_happens_in_pixel_space_before_normalisation():
    aug = TensorAugment(CIFAR_MEAN, CIFAR_STD, padding=4, hflip=True)
    img = torch.ones(3, 32, 32)  # white image: padded border pixels must be the normalised 0, not 0
    torch.manual_seed(3)
    seen_pad = False
    for _ in range(20):
        out = aug(img)
        assert out.shape == (3, 32, 32)
        zero = ((0 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD)).view(3, 1, 1)
        one = ((1 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD)).view(3, 1, 1)
        is_zero = torch.isclose(out, zero.expand_as(out), atol=1e-5).all(0)
        is_one = torch.isclose(out, one.expand_as(out), atol=1e-5).all(0)
        assert (is_zero | is_one).all()
        seen_pad |= bool(is_zero.any())
    assert seen_pad
    plain = TensorAugment(CIFAR_MEAN, CIFAR_STD, padding=4, hflip=True, augment=False)
    assert torch.allclose(plain(img), one.expand(3, 32, 32))


def test_train_sampler_order_depends_on_seed_and_epoch_only():
    """Acceptance check 17: same order after re-creating the sampler/loader; no set_epoch attribute."""
    s1 = TrainSampler(100, seed=7)
    assert not hasattr(s1, "set_epoch")
    s1.set_data_epoch(3)
    first = list(s1)
    s2 = TrainSampler(100, seed=7)  # a "resumed" process
    s2.set_data_epoch(3)
    assert list(s2) == first and sorted(first) == list(range(100))
    s2.set_data_epoch(4)
    assert list(s2) != first
    ds = torch.utils.data.TensorDataset(torch.arange(100))
    loader = DataLoader(ds, batch_size=10, sampler=s2)
    s2.set_data_epoch(3)
    assert torch.cat([b[0] for b in loader]).tolist() == first


def test_train_sampler_shards_union_equals_single_process_batches():
    full = TrainSampler(64, seed=1)
    r0, r1 = TrainSampler(64, seed=1, rank=0, world_size=2), TrainSampler(64, seed=1, rank=1, world_size=2)
    a, b0, b1 = full.indices(2), r0.indices(2), r1.indices(2)
    for i in range(4):  # per-rank batch 8 <-> global batch 16
        assert sorted(b0[8 * i : 8 * i + 8] + b1[8 * i : 8 * i + 8]) == sorted(a[16 * i : 16 * i + 16])
    odd = [TrainSampler(11, rank=r, world_size=2) for r in (0, 1)]
    assert len(odd[0]) == len(odd[1]) == 5 and len(list(odd[0])) == 5


def test_eval_shards_cover_dataset_exactly_once():
    n, w = 101, 3
    idx = [i for r in range(w) for i in EvalShardSampler(n, rank=r, world_size=w)]
    assert sorted(idx) == list(range(n))
    with pytest.raises(ValueError):
        EvalShardSampler(10, rank=3, world_size=3)
