"""The one entry point: `python -m resq.run [overrides]` (add -m to sweep).

Seeds, instantiates the data module (environments, buffer, exploration) and the learner from the
composed config, evaluates, trains (evaluating every `test_interval` env steps), writes the result
files (see `resq.results`) and prints a summary. Returns the final `test/return_mean`, the number a
Hydra sweeper optimises. In a multirun, a job that fails writes `error.txt`, logs the error and
returns nan, so one bad job does not sink the sweep.
"""

from __future__ import annotations

import logging
import math
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from resq.data import RolloutDataModule
from resq.learners.action_kinds import check_action_kind, supported_action_kinds
from resq.progress import EnvStepProgressBar
from resq.report import print_summary
from resq.results import RUN_COLUMNS, MetricsCSV, write_json

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Lightning's start-up chatter (accelerator lines, a cloud-logging advert) buries the run's own
    lines; called in every job, since sweep launchers run jobs in fresh processes."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=Warning)


class ConfigError(ValueError):
    """A composed config that cannot run, with the fix in the message."""


def optional(node: Any) -> Any:
    """Instantiate a group choice, or None for the empty `none` options (residual_function=none,
    main_function=none)."""
    if node is None or (isinstance(node, DictConfig) and "_target_" not in node):
        return None
    return instantiate(node)


def check_config(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        example = " env.payoff=[[8,-12,-12],[-12,0,0],[-12,0,7.9]]" if "env.payoff" in missing else ""
        raise ConfigError(f"missing value(s) {', '.join(missing)}: set them on the command line, e.g.{example}")


def build_datamodule(cfg: DictConfig) -> RolloutDataModule:
    return instantiate(cfg.data, env=instantiate(cfg.env))


def algorithms_for(action_kind: str) -> list[str]:
    """The algorithm options (conf/algorithm/*.yaml) whose learner handles `action_kind` actions."""
    names = []
    for path in sorted((Path(__file__).resolve().parents[1] / "conf" / "algorithm").glob("*.yaml")):
        target = OmegaConf.select(OmegaConf.load(path), "algorithm._target_")
        if target and action_kind in supported_action_kinds(get_class(target)):
            names.append(path.stem)
    return names


def build_learner(cfg: DictConfig, spec, choices: dict[str, Any] | None = None) -> pl.LightningModule:
    """The algorithm's LightningModule, composed from the agent, main and residual function choices.
    A learner that cannot act in the env's action kind (discrete / continuous) is refused here."""
    factory = instantiate(cfg.algorithm)
    choices = choices or {}
    check_action_kind(factory, spec, choices.get("algorithm"), choices.get("env"), algorithms_for(spec.action_kind))
    return factory(
        spec=spec,
        agent=instantiate(cfg.agent),
        main_function=optional(cfg.get("main_function")),
        residual_function=optional(cfg.get("residual_function")),
    )


def run_columns(cfg: DictConfig, choices: dict[str, Any]) -> dict[str, Any]:
    columns = {k: choices.get(k) for k in RUN_COLUMNS if k != "seed"}
    columns["seed"] = int(cfg.seed)
    return columns


def train(cfg: DictConfig, output_dir: str | Path, choices: dict[str, Any]) -> dict[str, Any]:
    """Run one configured experiment into `output_dir`; returns the last evaluation's row."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_config(cfg)
    quiet_lightning()
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.set_num_threads(int(cfg.torch_threads))
    pl.seed_everything(int(cfg.seed), verbose=False)

    columns = run_columns(cfg, choices)
    datamodule = build_datamodule(cfg)
    learner = build_learner(cfg, datamodule.spec, choices)
    metrics = MetricsCSV(output_dir / "metrics.csv", columns)
    callbacks: list[pl.Callback] = [metrics]
    # A live bar only on a terminal; logs (SLURM, CI, sweeps) get one line per evaluation instead.
    progress_bar = bool(cfg.trainer.get("enable_progress_bar", True)) and sys.stdout.isatty()
    if progress_bar:
        callbacks.append(EnvStepProgressBar(leave=True))
    logger = optional(cfg.get("logger"))
    if logger is not None:
        logger = logger(save_dir=str(output_dir))
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, max_epochs=datamodule.max_epochs, callbacks=callbacks, logger=logger or False,
        enable_progress_bar=progress_bar,
    )
    try:
        if cfg.eval_at_start:
            trainer.validate(learner, datamodule=datamodule, verbose=False)
        trainer.fit(learner, datamodule=datamodule)
    finally:
        datamodule.close()

    matrix = matrix_game_result(datamodule, learner, columns)
    if matrix is not None:
        write_json(output_dir / "matrix_game.json", matrix)
    if hasattr(learner, "result_files"):  # an env's own result file, e.g. mtq.json (resq.learners.ActorCritic)
        for name, payload in learner.result_files(datamodule.train_env, columns).items():
            write_json(output_dir / name, payload)
    print_summary(columns, metrics.last, matrix)
    return metrics.last


def matrix_game_result(datamodule: RolloutDataModule, learner: pl.LightningModule, columns: dict) -> dict | None:
    """The learned table of a one-step matrix game, or None for other environments."""
    env = datamodule.train_env
    snapshot = getattr(learner, "snapshot", None)
    if not hasattr(env, "payoff") or not snapshot:
        return None
    payoff = env.payoff
    q_joint = torch.tensor(snapshot["q_joint"])
    return {
        **columns,
        "payoff": payoff.tolist(),
        "q_joint": snapshot["q_joint"],
        "joint_value_name": getattr(learner, "joint_value_name", "Q_tot"),
        "noise_std": float(getattr(env, "noise_std", 0.0)),
        "q_main": snapshot.get("q_main"),
        "q_agents": snapshot["q_agents"],
        "greedy_joint_action": snapshot["greedy_joint_action"],
        **({"policy": snapshot["policy"]} if snapshot.get("policy") is not None else {}),  # actor-critic methods
        "optimal_joint_action": list(env.optimal_joint_action),
        "max_abs_error": float((q_joint - payoff).abs().max()),
        "t_env": datamodule.t_env,
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    choices = dict(hydra_cfg.runtime.choices)
    try:
        last = train(cfg, output_dir, choices)
    except Exception as error:
        (output_dir / "error.txt").write_text(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise
        log.error("job %s failed (%s: %s); the sweep goes on. Details: %s",
                  hydra_cfg.job.num, type(error).__name__, error, output_dir / "error.txt")
        return math.nan
    return float(last.get("test/return_mean", math.nan))


if __name__ == "__main__":
    main()
