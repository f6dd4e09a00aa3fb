"""Cost of one gradient update (and one rollout) per algorithm, as ratios to VDN, measured in one run.

    python benchmarks/update_cost.py                       # every algorithm on env=matrix_resq
    python benchmarks/update_cost.py --algorithms resq qmix --env matrix_qtran --updates 300

Each algorithm is built from its Hydra config exactly as `resq.run` builds it; the buffer is filled
with real rollouts, then the script times `updates` full steps (losses, backward, gradient clipping,
optimizer step) outside Lightning, and `rollouts` greedy-free (epsilon 1) rollouts. Times are medians
of 5 blocks. The point is the ratios: a method that costs 5x VDN per update costs ~5x in a sweep.
Writes the table to benchmarks/results/update_cost_<env>.md as well.

The helpers here (`compose_run`, `build`, `fill_buffer`, `update_step`, `blocks`) are shared with
`benchmarks/throughput.py`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import resq
from resq.data import EpisodeCollector, RolloutDataModule
from resq.data.episodes import EpisodeBatch
from resq.run import build_datamodule, build_learner

# The checkout whose `resq` is imported (benchmarks/ab.py runs these scripts against another checkout).
ROOT = Path(resq.__file__).resolve().parents[1]


def algorithms() -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / "algorithm").glob("*.yaml"))


def compose_run(overrides: list[str]) -> tuple[DictConfig, dict]:
    """The job config (without the hydra node) and its runtime choices, as `resq.run.main` sees them."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def build(cfg: DictConfig, choices: dict | None = None):
    """The data module and learner of a run, built by resq.run's own functions, bound together."""
    torch.manual_seed(int(cfg.seed))
    datamodule = build_datamodule(cfg)
    learner = build_learner(cfg, datamodule.spec, choices)
    datamodule.bind(learner)
    return datamodule, learner


def fill_buffer(datamodule: RolloutDataModule, learner, epsilon: float = 1.0) -> EpisodeCollector:
    """Collect until a batch can be sampled; returns the collector (on the training envs)."""
    collector = EpisodeCollector(datamodule.train_env, datamodule.generator)
    while not datamodule.buffer.can_sample(datamodule.batch_size):
        datamodule.buffer.insert(collector.collect(learner, epsilon))
    return collector


def update_step(learner) -> Callable[[EpisodeBatch], None]:
    """One full gradient step as training runs it, outside Lightning: losses (with the algorithm's loss
    weights), backward, gradient-norm clipping over the optimizer's parameters, optimizer step. An
    actor-critic learner (`update_order`, one optimizer per update) runs each of its due updates."""
    optimizers = learner.configure_optimizers()
    if hasattr(learner, "losses"):
        updates = [(learner.losses, optimizers)]
    else:  # resq.learners.ActorCritic: critic, then actor (every actor_update_interval), ...
        named = dict(zip(learner._optimizer_names, optimizers))
        updates = [(getattr(learner, f"{name}_losses"), named[name], name) for name in learner.update_order]

    def step(losses, optimizer, batch) -> None:
        loss = learner.total_loss(losses(batch))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], learner.grad_clip)
        optimizer.step()

    def update(batch: EpisodeBatch) -> None:
        if hasattr(learner, "losses"):
            step(learner.losses, optimizers, batch)
            return
        for losses, optimizer, name in updates:
            if learner.update_due(name):
                step(losses, optimizer, batch)
        learner.n_updates += 1

    return update


def blocks(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Median seconds per call of `fn` over `repeats` blocks of `n` calls (after a warm-up block)."""
    for _ in range(max(n // 5, 2)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def measure(algorithm: str, env: str, updates: int, rollouts: int) -> dict[str, float]:
    cfg, choices = compose_run([f"algorithm={algorithm}", f"env={env}"])
    datamodule, learner = build(cfg, choices)
    collector = fill_buffer(datamodule, learner)
    update = update_step(learner)
    batch = datamodule.buffer.sample(datamodule.batch_size, datamodule.generator)
    return {
        "update_ms": 1e3 * blocks(lambda: update(batch), max(updates // 5, 1)),
        "rollout_ms": 1e3 * blocks(lambda: collector.collect(learner, 1.0), max(rollouts // 5, 1)),
        "params": sum(p.numel() for p in learner.parameters() if p.requires_grad),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="*", default=None)
    parser.add_argument("--env", default="matrix_resq")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--rollouts", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.algorithms or algorithms()
    names = ["vdn", *[n for n in names if n != "vdn"]]
    results = {name: measure(name, args.env, args.updates, args.rollouts) for name in names}
    base = results["vdn"]["update_ms"]
    lines = [f"# update cost on env={args.env} (1 thread, medians of 5 blocks)", "",
             "| algorithm | ms / update | x VDN | ms / rollout | trainable params |", "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['update_ms']:.2f} | {r['update_ms'] / base:.2f} | {r['rollout_ms']:.2f} | {r['params']:,} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"update_cost_{args.env}.md").write_text(text)


if __name__ == "__main__":
    main()
