"""PyTorch Lightning's view of a pyrovae data set (:class:`PyroVAEDataModule`), and the import
of Lightning itself (:func:`lightning_package`: a one-line ConfigError naming the pip command
when it is missing). docs/lightning.md; the training module is ``lightning.py``.

Epoch e (1-based) binarizes the training set with ``Dataset.train_data(e, seed)``, permutes
it with ``randperm(N, Generator().manual_seed(seed * 7919 + e))`` and cuts N // B batches of
B rows x [B, D] (the last partial batch dropped): the minibatches of pyrovae's own loop. The
validation and test loaders give the whole test set [M, D] as one batch.
"""

from __future__ import annotations

import torch

from pyrovae.data import Dataset
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.interface import data_view
from pyrovae.training.trainer import _PERM_SEED_OFFSET

INSTALL = "pip install 'pyrovae[lightning]'"


def lightning_package():
    """``lightning.pytorch``, or a one-line ConfigError naming the pip command."""
    try:
        import lightning.pytorch as pl
    except ImportError:
        raise ConfigError(f"pyrovae.integrations.lightning needs PyTorch Lightning: "
                          f"{INSTALL}") from None
    return pl


pl = lightning_package()


def _same_batch(batch):
    """The DataLoader's collate function: the minibatch [B, D] the dataset gave, as it is."""
    return batch


class _EpochRows(torch.utils.data.Dataset):
    """The training rows [N, D] as epoch ``epoch`` sees them (dynamic binarization: a new draw
    per epoch), indexed by a whole minibatch of row indices at once."""

    def __init__(self, data: Dataset, seed: int):
        self.data, self.seed, self.epoch, self.rows = data, seed, None, None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.rows = epoch, self.data.train_data(epoch, self.seed)

    def __len__(self) -> int:
        return self.data.num_train

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.rows[idx]


class _EpochBatches(torch.utils.data.Sampler):
    """pyrovae's minibatches, one index tensor [B] per item: epoch e is ``randperm(N)`` seeded by
    (seed, e) cut into N // B batches of B rows. Lightning calls ``set_epoch(current_epoch)``
    on a loader's sampler before each epoch; e = current_epoch + 1."""

    def __init__(self, rows: _EpochRows, batch_size: int, seed: int):
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch + 1

    def __len__(self) -> int:
        return self.rows.data.num_train // self.batch_size

    def __iter__(self):
        n, bsz = self.rows.data.num_train, self.batch_size
        self.rows.set_epoch(self.epoch)
        gen = torch.Generator().manual_seed(self.seed * _PERM_SEED_OFFSET + self.epoch)
        order = torch.randperm(n, generator=gen).to(self.rows.data.device)
        for i in range(len(self)):
            yield order[i * bsz:(i + 1) * bsz]


class PyroVAEDataModule(pl.LightningDataModule):
    """A pyrovae :class:`~pyrovae.data.Dataset` as Lightning's loaders: the training minibatches
    x [B, D] of pyrovae's loop (module docstring), and the test set [M, D] as one batch for
    ``validate`` and ``test``. ``model``: the module that will be trained, whose data view it
    serves (e.g. a label-conditioned model reads each row followed by its one-hot class);
    :meth:`PyroVAEModule.datamodule` passes it. The loaders draw nothing from torch's global
    generator (each has its own), so they leave the training run's random stream as it is."""

    def __init__(self, data: Dataset, batch_size: int = 128, seed: int = 0, model=None):
        super().__init__()
        if not isinstance(data, Dataset):
            raise ConfigError(f"PyroVAEDataModule needs a pyrovae Dataset (pyrovae.load_dataset"
                              f"(...)), got {type(data).__name__}")
        if batch_size > data.num_train:
            raise ConfigError(f"batch_size = {batch_size} is larger than the training set "
                              f"({data.num_train} examples); lower it")
        self.data = data_view(model, data) if model is not None else data
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        rows = _EpochRows(self.data, self.seed)
        return torch.utils.data.DataLoader(  # (batch_size=None: each item is a whole batch)
            rows, sampler=_EpochBatches(rows, self.batch_size, self.seed), batch_size=None,
            collate_fn=_same_batch, generator=torch.Generator())

    def _test_loader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader([self.data.test_data()], batch_size=None,
                                           generator=torch.Generator())

    val_dataloader = test_dataloader = _test_loader
