"""The one entry point: `python -m resq.run [overrides]` (add -m to sweep).

Seeds, instantiates the data module (environments, buffer, exploration) and the learner from the
composed config, evaluates, trains (evaluating every `test_interval` env steps, checkpointing every
`checkpoint_interval`), writes the result files (see `resq.results`) and prints a summary. Returns the
final `test/return_mean`, the number a Hydra sweeper optimises.

Run again with the same output directory, a run resumes from its checkpoint (`resq.checkpoint`), and a
finished run is skipped. In a multirun, a job that fails writes `error.txt` and a line in the sweep's
`failures.jsonl`, logs the error and returns nan, so one bad job does not sink the sweep.
"""

from __future__ import annotations

import json
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

from resq.checkpoint import AtomicCheckpointIO, checkpoint_callbacks, find_checkpoint
from resq.data import RolloutDataModule
from resq.learners.action_kinds import check_action_kind, supported_action_kinds
from resq.progress import EnvStepProgressBar
from resq.report import print_summary
from resq.results import (
    RUN_COLUMNS,
    MetricsCSV,
    RunRecord,
    append_failure,
    mark_failed,
    read_run_record,
    write_json,
)

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Lightning's start-up chatter (accelerator lines, a cloud-logging advert) buries the run's own
    lines; called in every job, since sweep launchers run jobs in fresh processes."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=Warning)
    # A resumed run writes its checkpoints where the interrupted one did, on purpose.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty", category=Warning)
    # On a machine with SLURM's client installed, a run outside a SLURM job is not a mistake.
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used",
                            category=Warning)


class ConfigError(ValueError):
    """A composed config that cannot run, with the fix in the message."""


def optional(node: Any) -> Any:
    """Instantiate a group choice, or None for the empty `none` options (residual_function=none,
    main_function=none)."""
    if node is None or (isinstance(node, DictConfig) and "_target_" not in node):
        return None
    return instantiate(node)


def check_config(cfg: DictConfig) -> None:
    """Refuse, before anything is built, a config that cannot run; the message names the key and the fix."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        example = " env.payoff=[[8,-12,-12],[-12,0,0],[-12,0,7.9]]" if "env.payoff" in missing else ""
        raise ConfigError(f"missing value(s) {', '.join(missing)}: set them on the command line, e.g.{example}")
    for key in POSITIVE_KEYS:
        value = OmegaConf.select(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key} must be a positive integer, got {value!r}: set {key}=<n> with n >= 1")
    updates = OmegaConf.select(cfg, "data.updates_per_rollout")
    if updates is not None and (not isinstance(updates, int) or updates < 0):
        raise ConfigError(f"data.updates_per_rollout must be an integer >= 0, got {updates!r}")
    t_max, test_interval = int(cfg.t_max), int(cfg.test_interval)
    if t_max < test_interval:
        raise ConfigError(
            f"t_max ({t_max}) is shorter than one epoch (test_interval = {test_interval} env steps between "
            f"evaluations): lower test_interval (e.g. test_interval={t_max}) or raise t_max"
        )
    batch, buffer = OmegaConf.select(cfg, "data.batch_size"), OmegaConf.select(cfg, "data.buffer_size")
    if batch is not None and buffer is not None and batch > buffer:
        raise ConfigError(
            f"data.batch_size ({batch}) exceeds data.buffer_size ({buffer} episodes): a batch could never be "
            f"sampled. Lower data.batch_size or raise data.buffer_size"
        )
    checkpoint_epochs(cfg)


# Keys that must be integers >= 1 when present (zero or negative intervals never progress).
POSITIVE_KEYS = ("t_max", "test_interval", "test_episodes", "data.n_envs", "data.batch_size", "data.buffer_size",
                 "algorithm.target_update_interval", "trainer.log_every_n_steps")


def checkpoint_epochs(cfg: DictConfig) -> int | None:
    """Epochs between checkpoints, from `checkpoint_interval` (env steps, a multiple of test_interval:
    checkpoints are written at epoch ends); None when checkpointing is off (checkpoint_interval=null)."""
    interval = cfg.get("checkpoint_interval")
    if interval is None:
        return None
    test_interval = int(cfg.test_interval)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ConfigError(
            f"checkpoint_interval must be a positive number of env steps (a multiple of test_interval = "
            f"{test_interval}) or null to turn checkpoints off, got {interval!r}"
        )
    if interval % test_interval:
        fit = max(test_interval, interval // test_interval * test_interval)
        raise ConfigError(
            f"checkpoint_interval ({interval}) must be a multiple of test_interval ({test_interval}): checkpoints "
            f"are written at the end of an epoch, after its evaluation. E.g. checkpoint_interval={fit}"
        )
    return interval // test_interval


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain JSON values (what run.json stores and a resume compares)."""
    return json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=True)))


def check_same_run(previous: dict[str, Any] | None, config: dict[str, Any], output_dir: Path) -> None:
    """A directory resumes (or skips) only the run it holds: another config there would mix two runs."""
    if not previous or "config" not in previous:
        return
    old, new = _flatten(previous["config"]), _flatten(config)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
    if changed:
        shown = ", ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise ConfigError(
            f"{output_dir} holds a {previous.get('status', 'previous')} run with a different config ({shown}{more}). "
            f"Re-run it with its own overrides to resume it, or pick a new output directory "
            f"(hydra.run.dir=... for a run, hydra.sweep.dir=... for a sweep)"
        )


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


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


def train(cfg: DictConfig, output_dir: str | Path, choices: dict[str, Any], job: dict[str, Any] | None = None,
          callbacks: list[pl.Callback] | tuple = ()) -> dict[str, Any]:
    """Run one configured experiment into `output_dir`; returns the last evaluation's row.

    If `output_dir` holds a finished run of this config it is not run again; if it holds a checkpoint
    of this config, training resumes from it. `job` (sweep dir, number, overrides) goes into run.json.
    `callbacks` are extra Lightning callbacks (benchmarks/throughput.py times the loop with one).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    previous = read_run_record(output_dir)
    try:
        check_config(cfg)
        config = resolved(cfg)
        check_same_run(previous, config, output_dir)
    except ConfigError as error:
        if previous is None:  # a refused config leaves an earlier run's record as it was
            mark_failed(output_dir, error)
        raise
    if previous is not None and previous.get("status") == "finished":
        log.info("%s: this run finished already (run.json); not run again. Pick a new output directory to "
                 "repeat it.", output_dir)
        return previous.get("result") or {}
    checkpoint = find_checkpoint(output_dir)
    columns = run_columns(cfg, choices)
    record = RunRecord.start(output_dir, config, columns, job=job, resumed_from=str(checkpoint) if checkpoint else None)
    try:
        return fit(cfg, output_dir, columns, checkpoint, record, callbacks)
    except BaseException as error:
        record.fail(error)
        raise


def fit(cfg: DictConfig, output_dir: Path, columns: dict[str, Any], checkpoint: Path | None, record: RunRecord,
        extra_callbacks: list[pl.Callback] | tuple = ()) -> dict[str, Any]:
    """Build, train (from `checkpoint` when given) and write the results; `train` owns the run record."""
    quiet_lightning()
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.set_num_threads(int(cfg.torch_threads))
    pl.seed_everything(int(cfg.seed), verbose=False)

    datamodule = build_datamodule(cfg)
    learner = build_learner(cfg, datamodule.spec, columns)  # the run columns name the algorithm and env
    metrics = MetricsCSV(output_dir / "metrics.csv", columns)
    every_n_epochs = checkpoint_epochs(cfg)
    callbacks: list[pl.Callback] = [metrics, *checkpoint_callbacks(output_dir, every_n_epochs), *extra_callbacks]
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
        enable_progress_bar=progress_bar, enable_checkpointing=every_n_epochs is not None,
        plugins=[AtomicCheckpointIO(), *slurm_plugins()],
    )
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    try:
        if cfg.eval_at_start and checkpoint is None:
            trainer.validate(learner, datamodule=datamodule, verbose=False)
        trainer.fit(learner, datamodule=datamodule, ckpt_path=checkpoint)
    finally:
        datamodule.close()

    matrix = write_results(output_dir, datamodule, learner, columns)
    record.finish(metrics.last, t_env=datamodule.t_env)
    print_summary(columns, metrics.last, matrix)
    return metrics.last


def slurm_plugins() -> list:
    """Inside a SLURM job, Lightning's own auto-requeue (SIGUSR1: save an hpc checkpoint, scontrol
    requeue) would race submitit's, which `hydra/launcher=slurm` configures (max_num_timeout); the
    requeued job resumes from resq's checkpoint either way, so Lightning's is turned off."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def write_results(output_dir: Path, datamodule: RolloutDataModule, learner: pl.LightningModule, columns: dict) -> dict | None:
    """The result files written when training ends (metrics.csv is written as evaluations happen)."""
    matrix = matrix_game_result(datamodule, learner, columns)
    if matrix is not None:
        write_json(output_dir / "matrix_game.json", matrix)
    if hasattr(learner, "result_files"):  # an env's own result file, e.g. mtq.json (resq.learners.ActorCritic)
        for name, payload in learner.result_files(datamodule.train_env, columns).items():
            write_json(output_dir / name, payload)
    return matrix


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
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    job = {"sweep_dir": str(hydra_cfg.sweep.dir), "num": hydra_cfg.job.num, "overrides": overrides} if multirun else None
    try:
        last = train(cfg, output_dir, choices, job=job)
    except Exception as error:
        (output_dir / "error.txt").write_text(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
        if not multirun:
            raise
        append_failure(hydra_cfg.sweep.dir, hydra_cfg.job.num, output_dir, overrides, error, kind="exception")
        log.error("job %s failed (%s: %s); the sweep goes on. Details: %s",
                  hydra_cfg.job.num, type(error).__name__, error, output_dir / "error.txt")
        return math.nan
    return float(last.get("test/return_mean", math.nan))


if __name__ == "__main__":
    main()
