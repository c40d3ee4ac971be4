"""Datasets and dataloaders for training and evaluation, with resume-safe augmentation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .collate import ReferringCollator
from .refsegrs import load_refsegrs
from .rrsisd import load_rrsisd
from .synthetic import DATA_VERSION, SyntheticSceneStream, make_synthetic_dataset
from .transforms import TrainTransform

SYNTHETIC_SPLIT_SEEDS = {"val": 1_000_003, "test": 2_000_003}
"""Fixed seeds of the synthetic val/test scenes, so every run is scored on the same scenes."""
STREAM_LENGTH = 2**31 - 1


class KeyedTrainingSet(Dataset):
    """Training view of a dataset: the sampler's key ``k`` reads sample ``k % len(base)`` and augments it with a
    generator seeded by ``(seed, k)``, never by worker or call order, so a resumed run draws exactly the batches an
    uninterrupted run would. Without a transform it is the evaluation view (every expression optionally replaced by
    ``constant_expression``, for a control run)."""

    def __init__(self, base: Any, transform: TrainTransform | None, seed: int, constant_expression: str | None = None):
        self.base, self.transform, self.seed, self.constant_expression = base, transform, seed, constant_expression

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int) -> dict[str, Any]:
        sample = dict(self.base[int(key) % len(self.base)])
        if self.constant_expression is not None:
            sample["expression"] = self.constant_expression
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng((self.seed, int(key))))
        return sample


class EpochSampler(Sampler[int]):
    """Keys fixed by ``(seed, epoch)`` alone (set ``sampler.epoch`` before iterating): epoch ``e`` yields
    ``e * n + j`` for ``j`` in order (``fresh``: the synthetic stream, new scenes every epoch) or in a permutation
    drawn from ``(seed, e)``; `KeyedTrainingSet` reads sample ``j`` for the key."""

    def __init__(self, num_samples: int, seed: int, fresh: bool = False) -> None:
        if num_samples <= 0:
            raise ValueError(f"The training set is empty (num_samples={num_samples}).")
        self.num_samples, self.seed, self.fresh = num_samples, seed, fresh
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        offset = self.epoch * self.num_samples
        if self.fresh:
            return iter(range(offset, offset + self.num_samples))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter((offset + torch.randperm(self.num_samples, generator=generator)).tolist())


def load_split(dataset: str, split: str, data_dir: str | None = None, image_size: int = 128, num_samples: int = 256,
               max_samples: int | None = None, seed: int = 0, revision: str | None = None,
               version: int = DATA_VERSION) -> Any:
    """One split: synthetic train is an endless stream of fresh scenes; everything else a finite dataset (read from
    the folder or Hub dataset repo ``data_dir``, at ``revision`` for a repo). ``version``: of the synthetic scenes."""
    if dataset == "synthetic":
        if split == "train":
            return SyntheticSceneStream(image_size=image_size, seed=seed, length=STREAM_LENGTH, version=version)
        data = make_synthetic_dataset(num_samples, image_size=image_size, seed=SYNTHETIC_SPLIT_SEEDS[split],
                                      version=version)
    elif dataset in ("rrsisd", "refsegrs"):
        data = (load_rrsisd if dataset == "rrsisd" else load_refsegrs)(data_dir, split, revision=revision)
    else:
        raise ValueError(f"Unknown dataset {dataset!r}; expected synthetic, rrsisd or refsegrs.")
    if max_samples is not None and len(data) > max_samples:
        data = data.select(range(max_samples))
    return data


def build_datasets(data: Any, seed: int) -> dict[str, Any]:
    """``{"train", "val", "test"}`` for the run's `DataArguments` ``data`` (test only where the dataset has one)."""
    common = dict(data_dir=data.data_dir, image_size=data.image_size, revision=data.data_revision,
                  version=data.data_version)
    evaluation = dict(common, max_samples=data.max_eval_samples)
    result = {"train": load_split(data.dataset, "train", seed=seed, **common),
              "val": load_split(data.dataset, "val", num_samples=data.num_val_samples, **evaluation)}
    if data.dataset != "synthetic" or data.num_test_samples > 0:
        result["test"] = load_split(data.dataset, "test", num_samples=max(1, data.num_test_samples), **evaluation)
    return result


def train_transform(augment: str, seed: int) -> TrainTransform | None:
    if augment == "none":
        return None
    return TrainTransform(flip_prob=0.5 if augment in ("flip", "all") else 0.0, jitter=augment in ("jitter", "all"),
                          seed=seed)


def eval_dataloader(dataset: Any, processor: Any, batch_size: int, num_workers: int = 0,
                    constant_expression: str | None = None) -> DataLoader:
    return DataLoader(KeyedTrainingSet(dataset, None, 0, constant_expression), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, collate_fn=ReferringCollator(processor))


def build_dataloaders(data: Any, training: Any, datasets: dict[str, Any], processor: Any,
                      sampler: EpochSampler) -> tuple[DataLoader, dict[str, DataLoader]]:
    """The training dataloader (keyed augmentation, ``sampler`` order) and one evaluation dataloader per split, for
    the run's `DataArguments` ``data`` and `TrainingArguments` ``training``."""
    train_set = KeyedTrainingSet(datasets["train"], train_transform(data.augment, training.seed), training.seed,
                                 data.constant_expression)
    train = DataLoader(train_set, batch_size=training.per_device_train_batch_size, sampler=sampler, drop_last=True,
                       num_workers=data.dataloader_num_workers, collate_fn=ReferringCollator(processor))
    evaluation = {
        split: eval_dataloader(dataset, processor, training.per_device_eval_batch_size, data.dataloader_num_workers,
                               data.constant_expression)
        for split, dataset in datasets.items() if split != "train"
    }
    return train, evaluation


def train_sampler_for(data: Any, seed: int, datasets: dict[str, Any]) -> EpochSampler:
    """Fresh synthetic scenes every epoch, or a permutation of the real training set per epoch."""
    if data.dataset == "synthetic":
        return EpochSampler(data.train_samples_per_epoch, seed, fresh=True)
    return EpochSampler(len(datasets["train"]), seed)
