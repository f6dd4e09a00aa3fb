"""Collection with the policy acting as a share of raw random-action throughput, at several B (issue 8's
native-env target: >= 0.5 at the same B).

    python benchmarks/collection_ratio.py env=matrix_resq algorithm=resq --batch-sizes 1 8 64 512
    python benchmarks/collection_ratio.py env=predator_prey algorithm=qmix --out benchmarks/results/x.json

Positional arguments are Hydra overrides; for each B the data module and learner are built by
`resq.run`'s own functions with data.n_envs=B (as `benchmarks/throughput.py` does), then, in
interleaved blocks of at least --steps env steps each:

- raw:        env steps/s of the B training envs with uniform random available actions (no policy, no
              buffer; in inference mode, as the collector runs);
- collection: env steps/s of `EpisodeCollector.collect` with the policy acting at --epsilon (< 1, so
              the forward pass runs every step) plus the replay-buffer insert;
- acting:     microseconds per call of the policy's `act` alone (one step of all B envs: the agent's
              forward pass and the exploration draw) and of the raw rollout's random-action draw, and
              the ceiling they put on the ratio: a rollout costs at least its raw env steps with the
              policy's step in place of the random draw, so per env step collection / raw
              <= t_raw / (t_raw + (t_act - t_draw) / B), whatever the rest of the collector costs (an
              estimate: the raw loop's own bookkeeping, a host sync and two ops per step, is counted
              in t_raw, so on multi-step envs at small B collection can pass it).

Rates are per CPU second of this process (`time.process_time`; the steadier figure on a shared
machine) and per wall second; each is the median of --repeats blocks. The replay buffer holds
max(2 B, data.batch_size) episodes (the insert's cost does not depend on its size).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from omegaconf import open_dict

from resq.data.episodes import EpisodeBatch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import per_call_ms, random_actions, rate, raw_rollout
from update_cost import build, compose_run, fill_buffer


def measure(overrides: list[str], batch: int, args) -> dict:
    cfg, choices = compose_run([*overrides, f"data.n_envs={batch}", f"exploration.epsilon_start={args.epsilon}",
                                f"exploration.epsilon_finish={args.epsilon}"])
    with open_dict(cfg):
        cfg.data.buffer_size = max(2 * batch, int(cfg.data.batch_size))
    torch.set_num_threads(int(cfg.torch_threads))
    datamodule, learner = build(cfg, choices)
    env, buffer = datamodule.train_env, datamodule.buffer
    collector = fill_buffer(datamodule, learner, args.epsilon)
    generator = torch.Generator().manual_seed(1)

    def collect() -> int:
        episodes = collector.collect(learner, args.epsilon)
        buffer.insert(episodes)
        return episodes.n_steps

    step = env.reset()
    prev = EpisodeBatch.empty(env.spec, batch).prev_actions_at(0)
    hidden = learner.initial_state(batch)

    def act() -> None:
        with torch.inference_mode():
            learner.act(step.obs, prev, step.avail, hidden, args.epsilon, generator)

    def draw() -> None:
        with torch.inference_mode():
            random_actions(env, step.avail, generator)

    raw, collection, acting, drawing = [], [], [], []
    for _ in range(args.repeats):
        raw.append(rate(lambda: raw_rollout(env, generator), args.steps))
        collection.append(rate(collect, args.steps))
        acting.append(per_call_ms(act, max(10, args.steps // batch)))
        drawing.append(per_call_ms(draw, max(10, args.steps // batch)))
    datamodule.close()
    out = {"B": batch, "choices": {k: choices.get(k) for k in ("env", "algorithm", "agent")}}
    for clock in ("cpu", "wall"):
        r, c = statistics.median(x[clock] for x in raw), statistics.median(x[clock] for x in collection)
        out[clock] = {"raw_steps_per_s": r, "collection_steps_per_s": c, "collection_over_raw": c / r,
                      "raw_spread": [min(x[clock] for x in raw), max(x[clock] for x in raw)],
                      "collection_spread": [min(x[clock] for x in collection), max(x[clock] for x in collection)]}
        act_us = 1e3 * statistics.median(x[clock] for x in acting)
        draw_us = 1e3 * statistics.median(x[clock] for x in drawing)
        out[clock].update(act_us=act_us, draw_us=draw_us,
                          ratio_ceiling=(1 / r) / (1 / r + 1e-6 * (act_us - draw_us) / batch))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m resq.run")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64, 512])
    parser.add_argument("--epsilon", type=float, default=0.05, help="exploration while collecting (< 1: the policy acts)")
    parser.add_argument("--steps", type=int, default=5000, help="env steps per block (at least one rollout)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    for batch in args.batch_sizes:
        rows.append(measure(args.overrides, batch, args))
        gc.collect()
    c = rows[0]["choices"]
    print(f"{c['algorithm']} (agent {c['agent']}) on {c['env']}, epsilon {args.epsilon}; "
          f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| B | raw env steps/s (CPU) | collection steps/s (CPU) | collection / raw (CPU) | (wall) | "
          "acting step / random draw, us (CPU) | ceiling on collection / raw from acting alone (estimate) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        cpu, wall = row["cpu"], row["wall"]
        print(f"| {row['B']} | {cpu['raw_steps_per_s']:,.0f} | {cpu['collection_steps_per_s']:,.0f} | "
              f"{cpu['collection_over_raw']:.2f} | {wall['collection_over_raw']:.2f} | {cpu['act_us']:,.0f} / "
              f"{cpu['draw_us']:,.0f} | "
              f"{cpu['ratio_ceiling']:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {"overrides": args.overrides, "epsilon": args.epsilon, "rows": rows,
                  "load": [load_before, os.getloadavg()]}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
