from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

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


def options(group: str) -> list[str]:
    """The option names of a config group, from the files in conf/."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture
def compose_cfg():
    return compose_config
