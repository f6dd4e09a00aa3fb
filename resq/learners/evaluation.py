"""What every learner does the same way, as mixins for its LightningModule: the test metrics it logs at
each evaluation (one Lightning validation epoch of greedy test episodes: return mean and std, episode
length, the IGM violation and, where the env reports it, the win rate), and the linear learning-rate
anneal to `lr_final_fraction` by t_max. Value-factorization and actor-critic learners share them."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import CatMetric, MeanMetric

from resq.data.episodes import EpisodeBatch


class TestMetrics:
    """Mixin for a LightningModule with `spec`, `igm_violation(batch)` and `_snapshot(batch)`: call
    `init_test_metrics()` in `__init__` (after the LightningModule's own), and override
    `extra_test_metrics()` to log more at each evaluation."""

    __test__ = False  # a mixin, not a pytest test class, wherever a test module imports it

    def init_test_metrics(self) -> None:
        self.test_returns = CatMetric()
        self.test_won = MeanMetric()
        self.test_length = MeanMetric()
        self.test_igm = MeanMetric()
        self.snapshot: dict[str, Any] = {}

    def validation_step(self, batch: EpisodeBatch, batch_idx: int) -> None:
        self.test_returns.update(batch.returns)
        self.test_length.update(batch.lengths.float())
        if self.spec.reports_battle_won:
            self.test_won.update(batch.battle_won.float())
        self.test_igm.update(self.igm_violation(batch))
        if batch_idx == 0:
            self.snapshot = self._snapshot(batch)

    def extra_test_metrics(self) -> dict[str, torch.Tensor | float]:
        return {}

    def on_validation_epoch_end(self) -> None:
        returns = self.test_returns.compute()
        metrics = {
            "test/return_mean": returns.mean(),
            "test/return_std": returns.std(unbiased=False),
            "test/ep_length_mean": self.test_length.compute(),
            "test/igm_violation": self.test_igm.compute(),
        }
        if self.spec.reports_battle_won:
            metrics["test/battle_won_mean"] = self.test_won.compute()
        metrics.update(self.extra_test_metrics())
        self.log_dict(metrics, prog_bar=False)
        for metric in (self.test_returns, self.test_length, self.test_won, self.test_igm):
            metric.reset()


class AnnealedLearningRate:
    """Mixin for a LightningModule with `lr_final_fraction`: below 1, every optimizer's learning rate falls
    linearly from its configured value to that fraction of it by t_max (read from the batch's info)."""

    def on_train_batch_start(self, batch: EpisodeBatch, batch_idx: int) -> None:
        if self.lr_final_fraction == 1.0:
            return
        progress = min(batch.info.get("t_env", 0.0) / max(batch.info.get("t_max", 1.0), 1.0), 1.0)
        scale = 1.0 - progress * (1.0 - self.lr_final_fraction)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("base_lr", group["lr"]) * scale
