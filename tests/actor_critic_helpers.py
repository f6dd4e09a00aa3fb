"""Shared by the FOP, COMA and DOP tests: build a learner from the configs, take a fixed batch, run
updates on it, and run tiny end-to-end jobs."""

from __future__ import annotations

import json

import torch

from resq.data.collector import EpisodeCollector
from resq.run import build_datamodule, build_learner, train
from tests.conftest import compose_run

QUICK = ["t_max=320", "test_interval=160", "trainer.enable_progress_bar=false", "logger=none"]


def build(algorithm: str, env: str, overrides: list[str] | None = None, seed: int = 0):
    """The learner of `algorithm` on `env` and a fixed batch of 32 episodes its policy collected."""
    cfg, choices = compose_run([f"algorithm={algorithm}", f"env={env}", *(overrides or [])])
    torch.manual_seed(seed)
    datamodule = build_datamodule(cfg)
    learner = build_learner(cfg, datamodule.spec, choices)
    env_32 = datamodule.train_env.__class__  # a fresh copy with 32 envs, so one rollout is the batch
    kwargs = {"payoff": datamodule.train_env.payoff} if hasattr(datamodule.train_env, "payoff") else {}
    collector = EpisodeCollector(env_32(n_envs=32, **kwargs), torch.Generator().manual_seed(seed))
    epsilon = 1.0 if datamodule.spec.discrete else 0.0  # the games' protocols: uniform / own sampling
    batch = collector.collect(learner, epsilon)
    batch.info.update({"t_env": 0.0, "t_max": 1.0})
    return learner, batch


def loss_after_updates(learner, batch, name: str, steps: int = 30) -> tuple[float, float]:
    """(loss before, loss after) `steps` updates of `name` alone on `batch`; the sampling inside a loss is
    re-seeded before each measurement so both see the same draws."""
    optimizers = dict(zip(learner.update_order, learner.configure_optimizers()))

    def measure() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(learner.total_loss(getattr(learner, f"{name}_losses")(batch)))

    before = measure()
    for _ in range(steps):
        if name == "temperature":
            learner.actor_losses(batch)
        loss = learner.total_loss(getattr(learner, f"{name}_losses")(batch))
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()
    return before, measure()


def run_json(tmp_path, algorithm: str, env: str, overrides: list[str], name: str) -> dict:
    """A tiny end-to-end run; returns its result file `name`."""
    cfg, choices = compose_run([f"algorithm={algorithm}", f"env={env}", *QUICK, *overrides])
    train(cfg, tmp_path, choices)
    assert (tmp_path / "metrics.csv").exists()
    return json.loads((tmp_path / name).read_text())


def learned_matrix(tmp_path, algorithm: str, seed: int = 0, env: str = "matrix_qtran", t_max: int = 10000) -> dict:
    """matrix_game.json after a full run (FOP Table 1's 10k steps on the QTRAN payoff)."""
    cfg, choices = compose_run([f"algorithm={algorithm}", f"env={env}", f"seed={seed}", f"t_max={t_max}",
                                "test_interval=5000", "trainer.enable_progress_bar=false", "logger=none"])
    train(cfg, tmp_path, choices)
    return json.loads((tmp_path / "matrix_game.json").read_text())
