"""Checkpoints of a training run: :meth:`save` writes the whole position (parameters,
Adam's state, the averaged weights, global ``pyro.param`` values, the epoch, batch and step,
the random state, the history and the data's fingerprint; a KL decomposition's own trained
part, FactorVAE's discriminator and its Adam, as "decomposition") atomically; :meth:`restore`
continues from one bit for bit. A non-finite value stops the run before a checkpoint is
overwritten, and a failed write (full disk, permissions) is one line that says what was kept.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pyrovae.data.fingerprint import data_fingerprint
from pyrovae.runs import CHECKPOINT_NAME, save_checkpoint
from pyrovae.runs.checkpoint import RESUME_FIELDS
from pyrovae.runtime.errors import CheckpointError
from pyrovae.runtime.files import WriteError, reason
from pyrovae.training.state import capture_rng, restore_rng


class Checkpointing:
    """The checkpoint half of :class:`pyrovae.training.trainer.Trainer` (a mixin: it reads
    the trainer's model, optimizer, averages, global params and position)."""

    def save(self) -> None:
        """Checkpoint the current position, unless a non-finite value got in."""
        self.loss_sum = self.dist.mean(self.loss_sum)  # (every rank saves; rank 0 writes)
        self._check_global_params()  # (e.g. one the epoch's evaluation made)
        if self.out_dir is None:
            return
        self._check_finite()
        self.board.flush()  # the TensorBoard events up to the checkpoint are on disk first
        if getattr(self, "data_fingerprint", None) is None:  # (train() sets it; computed once)
            self.data_fingerprint = data_fingerprint(self.data)
        path = self.out_dir / CHECKPOINT_NAME
        with self._disk_errors(path):
            weights = ({"model": self.model.state_dict()} if self.average is None else
                       {"model": self.average.averaged_state_dict(self.model),  # what is read
                        "train_model": self.model.state_dict()})  # what training continues
            save_checkpoint(path, {
                "config": self.config.to_dict(), "input_shape": list(self.data.shape),
                **weights, **self.global_params.checkpoint_entries(self.average),
                "optimizer": self.optimizer.state_dict(),
                **({"decomposition": self.side.state_dict()}
                   if getattr(self, "side", None) is not None else {}),
                "epoch": self.epoch, "batch": self.batch, "step": self.step,
                "loss_sum": self.loss_sum.detach().cpu(), "seconds": self.seconds,
                "history": self.history, "rng": capture_rng(),
                "data_sha256": self.data_fingerprint})

    def _check_finite(self) -> None:
        has_checkpoint = self.out_dir is not None and (self.out_dir / CHECKPOINT_NAME).exists()
        self.watch.check(self.model, self._last_batch, self.tc.lr, has_checkpoint,
                         extra=self.global_params.named())

    @contextlib.contextmanager
    def _disk_errors(self, path: Path):
        """Turn a failed write (disk full, permissions) into a clear error; the atomic writes
        leave the previous file as it was."""
        try:
            yield
        except OSError as err:
            kept = (self.out_dir / CHECKPOINT_NAME).exists()
            if isinstance(err, WriteError):  # names the very file (e.g. one of the PNGs)
                path = err.filename
            # (a run without a checkpoint is taken back by train(): nothing to resume)
            then = ("the previous checkpoint is intact: free space or fix permissions, then "
                    "resume with --resume" if kept else "no checkpoint was written yet: free "
                    "space or fix permissions, then train again")
            raise CheckpointError(f"could not write '{path}' at step {self.step} "
                                  f"({reason(err)}); {then}") from None

    def restore(self, payload: dict) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        missing = [key for key in RESUME_FIELDS if key not in payload]
        if missing:
            raise CheckpointError(f"the checkpoint lacks '{missing[0]}', which resuming needs; "
                                  f"it is incomplete or corrupt")
        try:  # an averaged run trains on from "train_model" (averaging.py)
            self.model.load_state_dict(payload.get("train_model", payload["model"]))
            self.global_params.load(payload.get("train_pyro_params",
                                                payload.get("pyro_params", {})))
            self.optimizer.load_state_dict(payload["optimizer"])
            if getattr(self, "side", None) is not None:  # FactorVAE's discriminator and Adam
                self.side.load_state_dict(payload["decomposition"])
            if self.average is not None and "train_model" in payload:
                self.average.load_state_dict(payload["model"], payload.get("pyro_params"))
            elif self.average is not None:  # averaging switched on at a resume: from here
                self.average.reset()
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(f"the checkpoint does not fit its config ({first})") from None
        self.epoch, self.batch, self.step = payload["epoch"], payload["batch"], payload["step"]
        self.loss_sum = payload["loss_sum"].to(self.device)
        self.seconds, self.history = payload["seconds"], list(payload["history"])
        try:
            restore_rng(payload["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:
            raise CheckpointError(f"the checkpoint's 'rng' is not a random state this run can "
                                  f"continue ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:100] if str(err) else ''}); "
                                  f"it is damaged or crafted") from None
