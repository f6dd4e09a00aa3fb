"""Shared pieces of the actor-critic tests: build a method from its config and check that its own
updates reduce its own losses on a fixed batch."""

from __future__ import annotations

import torch

from resq.data import EpisodeBatch, EpisodeCollector
from resq.run import build_datamodule, build_learner
from tests.conftest import compose_config


def build(algorithm: str, env: str, *overrides: str):
    cfg = compose_config([f"algorithm={algorithm}", f"env={env}", *overrides])
    datamodule = build_datamodule(cfg)
    return build_learner(cfg, datamodule.spec, {"algorithm": algorithm, "env": env}), datamodule


def fixed_batch(learner, datamodule, episodes: int = 32, seed: int = 0) -> EpisodeBatch:
    """Episodes collected by the learner itself (training behaviour) in the env of `datamodule`."""
    torch.manual_seed(seed)
    env = datamodule.env_factory(n_envs=episodes, seed=seed)
    batch = EpisodeCollector(env, torch.Generator().manual_seed(seed)).collect(learner, epsilon=0.5)
    batch.info = {"t_env": 0, "t_max": 1}
    return batch


def loss_before_and_after(learner, batch: EpisodeBatch, name: str, steps: int = 30, lr: float = 1e-2):
    """`name`'s weighted loss on `batch` before and after `steps` Adam steps on its own parameter group
    (targets fixed; the same random draws, e.g. Gumbel noise, for the two measurements)."""
    params = list(learner.parameter_groups()[name])
    optimizer = torch.optim.Adam(params, lr=lr)
    losses = getattr(learner, f"{name}_losses")

    def measure() -> float:
        torch.manual_seed(123)
        with torch.no_grad() if name == "critic" else torch.enable_grad():
            return float(learner.total_loss(losses(batch)).detach())

    before = measure()
    for _ in range(steps):
        torch.manual_seed(123)
        loss = learner.total_loss(losses(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, measure()
