"""Cost of one gradient update (and one rollout) per algorithm, as ratios to VDN, measured in one run.

    python benchmarks/update_cost.py                       # every algorithm on env=matrix_resq
    python benchmarks/update_cost.py --algorithms resq qmix --env matrix_qtran --updates 300

Each algorithm is built from its Hydra config exactly as `resq.run` builds it; the buffer is filled
with real rollouts, then the script times `updates` full steps (losses, backward, gradient clipping,
optimizer step) outside Lightning, and `rollouts` greedy-free (epsilon 1) rollouts. Times are medians
of 5 blocks. The point is the ratios: a method that costs 5x VDN per update costs ~5x in a sweep.
Writes the table to benchmarks/results/update_cost_<env>.md as well.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from resq.data import EpisodeCollector
from resq.run import build_datamodule, build_learner

ROOT = Path(__file__).resolve().parents[1]


def algorithms() -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / "algorithm").glob("*.yaml"))


def blocks(fn, n: int, repeats: int = 5) -> float:
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
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"algorithm={algorithm}", f"env={env}"])
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    learner = build_learner(cfg, datamodule.spec)
    datamodule.bind(learner)
    collector = EpisodeCollector(datamodule.train_env, datamodule.generator)
    while not datamodule.buffer.can_sample(datamodule.batch_size):
        datamodule.buffer.insert(collector.collect(learner, 1.0))
    optimizer = learner.configure_optimizers()
    batch = datamodule.buffer.sample(datamodule.batch_size, datamodule.generator)

    def update() -> None:
        terms = learner.losses(batch)
        loss = sum(v for k, v in terms.items() if k.startswith("loss_"))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(learner.parameters(), learner.grad_clip)
        optimizer.step()

    return {
        "update_ms": 1e3 * blocks(update, updates // 5),
        "rollout_ms": 1e3 * blocks(lambda: collector.collect(learner, 1.0), rollouts // 5),
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
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"update_cost_{args.env}.md").write_text(text)


if __name__ == "__main__":
    main()
