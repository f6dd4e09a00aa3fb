"""A live progress bar that speaks in env steps: `env steps 12,000 | return -1.01 | epsilon 0.52`."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import RichProgressBar

_SHOWN = {"t_env": ("env steps", "{:,.0f}"), "train/return_mean": ("return", "{:.2f}"), "train/epsilon": ("epsilon", "{:.2f}")}


class EnvStepProgressBar(RichProgressBar):
    """Lightning's rich bar, with only env steps, the last rollout's return and epsilon beside it."""

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        shown = {}
        for key, (name, fmt) in _SHOWN.items():
            if key in metrics:
                shown[name] = fmt.format(float(metrics[key]))
        return shown
