"""Env steps per second of every native environment at B = 1, 8, 64 copies, and the ratio to B = 1.

    python benchmarks/env_throughput.py                          # every env in ENVS
    python benchmarks/env_throughput.py --envs predator_prey --batch-sizes 1 64 --seconds 5
    python benchmarks/env_throughput.py --out benchmarks/results/env_throughput.json

Each env is built from its Hydra config (conf/env/<name>.yaml) exactly as `resq.run` builds it.
Actions are uniform random available actions (drawn outside the timed region); the clock runs only
over `reset()` and `step()`. An env step is one step of one live copy (what `t_env` counts), so copies
whose episode already ended are not counted while they wait for the others. Each figure is the
median of `--repeats` runs of `--seconds` each, in one process, one torch thread; the ratios to B = 1
come from the same run. `--out` writes {env: {B: steps_per_s}} as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]

#: conf/env options to measure; adding an environment is one line here.
ENVS = [
    "matrix_resq",
    "predator_prey",
    "qtran_pp",
    "qtran_pp_n4",
    "gaussian_squeeze",
    "mgs",
]


def env_factory(name: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"env={name}"])
    return instantiate(cfg.env)


def steps_per_second(make, batch: int, seconds: float, seed: int) -> float:
    """Live copy-steps per second of `reset` + `step` over about `seconds` of timed calls."""
    env = make(n_envs=batch, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    n, a = env.spec.n_agents, env.spec.n_actions
    timed, steps = 0.0, 0
    start = time.perf_counter()
    step = env.reset()
    timed += time.perf_counter() - start
    live = torch.ones(batch, dtype=torch.bool)
    while timed < seconds:
        actions = torch.multinomial(step.avail.reshape(batch * n, a).float(), 1, generator=generator).view(batch, n)
        start = time.perf_counter()
        step = env.step(actions)
        timed += time.perf_counter() - start
        steps += int(live.sum())
        live &= ~step.done
        if not live.any():
            start = time.perf_counter()
            step = env.reset()
            timed += time.perf_counter() - start
            live[:] = True
    env.close()
    return steps / timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="*", default=ENVS)
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write {env: {B: steps_per_s}} as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)

    results: dict[str, dict[int, float]] = {}
    print(f"| env | {' | '.join(f'B={b} steps/s' for b in args.batch_sizes)} | {' | '.join(f'x B={b}' for b in args.batch_sizes[1:])} |")
    print("|---" * (2 * len(args.batch_sizes)) + "|")
    for name in args.envs:
        make = env_factory(name)
        rates = {b: statistics.median(steps_per_second(make, b, args.seconds, seed) for seed in range(args.repeats))
                 for b in args.batch_sizes}
        results[name] = rates
        base = rates[args.batch_sizes[0]]
        cells = [f"{rates[b]:,.0f}" for b in args.batch_sizes] + [f"{rates[b] / base:.1f}" for b in args.batch_sizes[1:]]
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({env: {str(b): v for b, v in r.items()} for env, r in results.items()}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
