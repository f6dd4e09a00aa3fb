from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

# One intra-op thread, as every training run uses (torch_threads=1): on a busy 2-core machine two
# threads spin against each other and a tiny backward pass took 1.5 s instead of 20 ms.
torch.set_num_threads(1)

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides or [], return_hydra_config=return_hydra_config)


def compose_run(overrides: list[str] | None = None):
    """A job's config (without the hydra node) and its runtime choices, as `resq.run.main` sees them."""
    cfg = compose_config(overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def options(group: str, value_type: str | None = None) -> list[str]:
    """The option names of a config group, from the files in conf/; with `value_type`, only the options
    whose `_target_` class declares it ("expected" or "distributional")."""
    names = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    if value_type is None:
        return names
    return [name for name in names if option_value_type(group, name) == value_type]


def option_value_type(group: str, name: str) -> str | None:
    """`value_type` of the class an option instantiates (None for empty options such as `none`)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    node = OmegaConf.load(CONF / group / f"{name}.yaml") or {}
    if "_target_" not in node:
        return None
    return getattr(get_class(node["_target_"]), "value_type", None)


def env_target(name: str) -> str | None:
    """The `_target_` of conf/env/<name>.yaml, following its defaults list to the file that sets it."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(CONF / "env" / f"{name}.yaml") or {}
    target = OmegaConf.select(node, "env._target_")
    if target is not None:
        return target
    for parent in node.get("defaults", []):
        if isinstance(parent, str) and parent != "_self_":
            found = env_target(parent)
            if found is not None:
                return found
    return None


# Adapters of optional packages; their own test files build every algorithm on them (tests/test_smac.py, ...).
EXTERNAL_ENV_TARGETS = ("envs.SMACEnv", "envs.SMAXEnv", "envs.PettingZooEnv", "envs.GymMultiAgentEnv")


@pytest.fixture
def compose_cfg():
    return compose_config
