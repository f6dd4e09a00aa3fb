"""Which action kinds (discrete, continuous) a learner handles, checked when a run is built.

A learner class lists the kinds it supports in `action_kinds`; one without the attribute (the value
factorization family, which takes argmaxes over A actions) is discrete-only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from envs import DISCRETE, EnvSpec
from resq.learners.errors import IncompatibleComponentsError


def learner_class(factory: Callable | type) -> type:
    """The class behind a learner factory (a class, or a Hydra `_partial_` of one)."""
    return factory.func if isinstance(factory, functools.partial) else factory


def supported_action_kinds(factory: Callable | type) -> tuple[str, ...]:
    return tuple(getattr(learner_class(factory), "action_kinds", (DISCRETE,)))


def check_action_kind(
    factory: Callable | type,
    spec: EnvSpec,
    algorithm: str | None = None,
    env: str | None = None,
    alternatives: Iterable[str] = (),
) -> None:
    """Raise `IncompatibleComponentsError` unless the learner handles the env's action kind.

    `algorithm` and `env` are the config names to quote (the class names stand in when absent);
    `alternatives` are the algorithm options that do handle this env's action kind.
    """
    kinds = supported_action_kinds(factory)
    if spec.action_kind in kinds:
        return
    cls = learner_class(factory)
    method = f"algorithm={algorithm}" if algorithm else cls.__name__
    where = f"env={env}" if env else "this environment"
    options = sorted(set(alternatives))
    fix = (f"pick an algorithm for {spec.action_kind} actions: " + ", ".join(f"algorithm={o}" for o in options)
           if options else f"pick an algorithm whose learner lists '{spec.action_kind}' in action_kinds")
    raise IncompatibleComponentsError(
        f"{method} ({cls.__name__}) handles {' and '.join(kinds)} actions only, but {where} has "
        f"{spec.describe_actions()}. Fix: {fix}, or an env with {' or '.join(kinds)} actions."
    )
