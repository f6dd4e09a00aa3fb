"""Errors a training run raises on purpose, each naming the problem and the fix."""

_NON_FINITE_FIXES = (
    "Evaluations written so far are kept in metrics.csv and the last checkpoint (from before it) in "
    "checkpoints/. Fixes: lower the learning rate (algorithm.optimizer.lr=...), check the environment's "
    "rewards for nan/inf, or tighten gradient clipping (algorithm.grad_clip=...)."
)


# The values each loss term is computed from: a nan or inf in any of them makes that loss non-finite.
LOSS_COMPONENTS = {
    "loss_td": "Q_tot (+ w_r Q_r) of the main (and residual) function, or its TD target",
    "loss_jt": "Q_jt of the central network, or its TD target",
    "loss_opt": "QTRAN's Q'_jt - Q_jt + V_jt at the greedy joint action",
    "loss_nopt": "QTRAN's Q'_jt - Q_jt + V_jt at the taken joint action",
    "loss_nopt_min": "QTRAN-alt's counterfactual Q'_jt - Q_jt + V_jt",
}


class NonFiniteError(RuntimeError):
    """A value of a training run became nan or inf. `component` names the loss term or tensor, `t_env`
    the env step; the run stops before the bad value is applied or saved."""

    def __init__(self, message: str, component: str, t_env: int) -> None:
        super().__init__(f"{message} {_NON_FINITE_FIXES}")
        self.component = component
        self.t_env = t_env


class NonFiniteLossError(NonFiniteError):
    """A loss became nan or inf; the run stops before the bad update is applied."""

    def __init__(self, name: str, value: float, t_env: int, step: int) -> None:
        super().__init__(
            f"the {name} loss{_computed_from(name)} became {value} at env step {t_env} (gradient step {step}); "
            f"training stopped before applying that update.",
            component=name, t_env=t_env,
        )


def _computed_from(name: str) -> str:
    return f" (from {LOSS_COMPONENTS[name]})" if name in LOSS_COMPONENTS else ""


class NonFiniteStateError(NonFiniteError):
    """A parameter, target-network value or optimizer statistic became nan or inf (found before a
    checkpoint is written, so the last good checkpoint is never overwritten)."""

    def __init__(self, name: str, t_env: int) -> None:
        super().__init__(
            f"{name} holds nan or inf at env step {t_env}; training stopped without writing a checkpoint.",
            component=name, t_env=t_env,
        )


class IncompatibleComponentsError(ValueError):
    """Two config choices that cannot work together (e.g. a residual function with no central Q_jt)."""
