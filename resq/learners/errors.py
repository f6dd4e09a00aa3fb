"""Errors a training run raises on purpose, each naming the problem and the fix."""


class NonFiniteLossError(RuntimeError):
    """A loss became nan or inf; the run stops before the bad update is applied."""

    def __init__(self, name: str, value: float, t_env: int, step: int) -> None:
        super().__init__(
            f"the {name} loss became {value} at env step {t_env} (gradient step {step}); training stopped "
            f"before applying that update. Evaluations written so far are kept in metrics.csv. Fixes: lower "
            f"the learning rate (algorithm.optimizer.lr=...), check the environment's rewards for nan/inf, "
            f"or tighten gradient clipping (algorithm.grad_clip=...)."
        )
        self.t_env = t_env


class IncompatibleComponentsError(ValueError):
    """Two config choices that cannot work together (e.g. a residual function with no central Q_jt)."""
