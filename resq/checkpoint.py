"""Checkpoints and resume, built on Lightning's own checkpointing.

A checkpoint is written at the end of every `checkpoint_interval / test_interval`-th epoch (an epoch =
`test_interval` env steps, after its evaluation), to `<run dir>/checkpoints/last.ckpt`. Lightning puts
in it the networks and target networks (the LightningModule's state_dict), the optimizer, the loop
counters and the `state_dict()` of the DataModule (t_env, episodes, the epsilon schedule, its generator,
the environments' generators, optionally the replay buffer) and of every stateful callback: `MetricsCSV`
(the evaluations so far) and `GlobalRNG` below. The learner's `on_save_checkpoint` adds the episode of
the last target update and the last evaluation's matrix-game snapshot.

Resuming is `trainer.fit(..., ckpt_path=last.ckpt)`: Lightning restores everything above and starts
the next epoch, so a resumed run replays exactly what the uninterrupted run would have done.
Checkpoints are written to a temporary file and renamed (`AtomicCheckpointIO`), and `FiniteStateGuard`
refuses to write one whose state holds nan or inf, so the last good checkpoint always survives.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from resq.learners.errors import NonFiniteStateError

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "last"


def checkpoint_path(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR / f"{CHECKPOINT_NAME}.ckpt"


def find_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The run's checkpoint if it has one (a leftover temporary file from a killed save is ignored)."""
    path = checkpoint_path(output_dir)
    return path if path.is_file() else None


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file beside the target, fsync, then rename over it: a run killed
    mid-save leaves the previous checkpoint intact (Lightning's own writer stages the file in /tmp and
    copies it across file systems, which is not atomic)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class GlobalRNG(pl.Callback):
    """Saves and restores the process-wide generators (torch's, Python's `random`, numpy's if present).

    Distributional learners draw quantile levels from torch's global generator and the IGM metric
    samples test states from it, so a resumed run needs it where the checkpoint left it.
    """

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _plain(random.getstate())}
        numpy = _numpy()
        if numpy is not None:
            name, keys, pos, has_gauss, cached = numpy.random.get_state()
            state["numpy"] = [name, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy = _numpy()
        if numpy is not None and "numpy" in state:
            name, keys, pos, has_gauss, cached = state["numpy"]
            numpy.random.set_state((name, keys.numpy(), pos, has_gauss, cached))


def _plain(value: Any) -> Any:
    """Tuples to lists, so the state loads with torch.load(weights_only=True)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _numpy():
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
        return None
    return numpy


# What the first two parts of a ValueFactorization parameter name are.
_HEADS = {"main": "", "residual": "residual function's ", "central": "central Q_jt's "}
_PARTS = {"agent": "agent network", "mixer": "mixer"}


def describe(name: str) -> str:
    """'target_nets.central.mixer.layers.0.weight' -> 'target_nets.central.mixer.layers.0.weight (the
    target copy of the central Q_jt's mixer)'; names of other shapes come back as they are."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] not in ("nets", "target_nets") or parts[1] not in _HEADS or parts[2] not in _PARTS:
        return name
    what = "main function" if parts[1:3] == ["main", "mixer"] else _HEADS[parts[1]] + _PARTS[parts[2]]
    copy = "the target copy of the " if parts[0] == "target_nets" else "the "
    return f"{name} ({copy}{what})"


class FiniteStateGuard(pl.Callback):
    """Before every checkpoint (it runs before ModelCheckpoint at each epoch end), checks that every
    parameter and buffer of the learner (networks and target networks) and every optimizer statistic
    is finite; raises `NonFiniteStateError` naming the first bad one and the env step otherwise."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        t_env = int(getattr(trainer.datamodule, "t_env", -1))
        for name, tensor in pl_module.state_dict().items():
            if _non_finite(tensor):
                raise NonFiniteStateError(describe(name), t_env)
        for i, optimizer in enumerate(trainer.optimizers):
            for param_state in optimizer.state.values():
                for key, value in param_state.items():
                    if _non_finite(value):
                        raise NonFiniteStateError(f"the optimizer's {key} statistic (optimizer {i})", t_env)


def _non_finite(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())


def checkpoint_callbacks(output_dir: str | os.PathLike, every_n_epochs: int | None) -> list[pl.Callback]:
    """The callbacks that make a run resumable: none when checkpointing is off (`every_n_epochs` None)."""
    if every_n_epochs is None:
        return []
    return [
        GlobalRNG(),
        FiniteStateGuard(),
        ModelCheckpoint(
            dirpath=Path(output_dir) / CHECKPOINT_DIR, filename=CHECKPOINT_NAME, every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=True, save_top_k=1, save_last=False, enable_version_counter=False,
        ),
    ]
