"""Env steps per second of the external adapters at several batch sizes, with the ratio to B = 1.

    python benchmarks/external_env_throughput.py                        # every adapter whose package is here
    python benchmarks/external_env_throughput.py --envs smax_3s_vs_5z --batch 1 8 64 --out smax.json

Each env is built from its Hydra config (conf/env/<name>.yaml) as `resq.run` builds it, reset, and
stepped with uniformly random available actions (a copy that has ended is reset with the others once
every copy has ended, as the collector does); JAX compiles before the clock starts. One "env step" is
one step of one running copy, as t_env counts them (copies that ended and wait for the others do not count). `smac_standin` is SMAC's adapter on the
stand-in game of tests/smac_standin.py: it measures the worker-process round trip, not StarCraft II.
Numbers depend on the machine's load: compare the ratios of one run, and prefer the per-CPU-second
rate on a shared machine. With --out FILE, writes {env: {B: steps_per_s}} as JSON (wall clock) and
FILE_cpu.json (per CPU second).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]
NEEDS = {"smax_3s_vs_5z": "jaxmarl", "pz_simple_spread": "mpe2", "pz_pursuit": "pymunk", "lbf": "lbforaging",
         "smac_standin": None}
MAX_PROCESSES = 8  # smac_standin starts one process per copy: B = 64 would start 64


def make(name: str, n_envs: int):
    overrides = [f"env={name}"]
    if name == "smac_standin":
        sys.path.insert(0, str(ROOT))
        overrides = ["env=3s_vs_5z", "+env.factory._target_=tests.smac_standin.StandInStarCraft2Env",
                     "+env.factory._partial_=true"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return instantiate(cfg.env)(n_envs=n_envs, seed=0)


def steps_per_second(env, seconds: float, generator: torch.Generator) -> tuple[float, float]:
    """(env steps per wall-clock second, env steps per CPU second of this process). On a shared machine
    the second is the steadier number; it leaves out the SMAC workers' own CPU time."""
    def act(avail):
        return torch.multinomial(avail.flatten(0, 1).float(), 1, generator=generator).view(avail.shape[:2])

    step = env.reset()
    for _ in range(3):  # warm-up (and JAX's compile)
        step = env.step(act(step.avail))
    step, count = env.reset(), 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        if step.done.all():
            step = env.reset()
        count += int((~step.done).sum())  # the steps training counts (t_env): copies still running
        step = env.step(act(step.avail))
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(NEEDS))
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per (env, B)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, dict[int, float]] = {}
    cpu_results: dict[str, dict[int, float]] = {}
    for name in args.envs:
        needs = NEEDS.get(name)
        if needs and importlib.util.find_spec(needs) is None:
            print(f"{name}: skipped ({needs} is not installed)")
            continue
        results[name], cpu_results[name] = {}, {}
        for b in args.batch:
            if name == "smac_standin" and b > MAX_PROCESSES:
                print(f"{name}: B={b} skipped (one process per copy; at most {MAX_PROCESSES} here)")
                continue
            env = make(name, b)
            try:
                results[name][b], cpu_results[name][b] = steps_per_second(
                    env, args.seconds, torch.Generator().manual_seed(0))
            finally:
                env.close()
            base, cpu_base = results[name][args.batch[0]], cpu_results[name][args.batch[0]]
            print(f"{name:18s} B={b:3d}: {results[name][b]:9.0f} env steps/s (x{results[name][b] / base:5.1f}), "
                  f"{cpu_results[name][b]:9.0f} per CPU second (x{cpu_results[name][b] / cpu_base:5.1f}) "
                  f"vs B={args.batch[0]}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
        args.out.with_name(args.out.stem + "_cpu.json").write_text(json.dumps(cpu_results, indent=2))


if __name__ == "__main__":
    main()
