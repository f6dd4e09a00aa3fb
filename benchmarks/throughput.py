"""Throughput of one configured run, every figure measured in one process so their ratios hold.

    python benchmarks/throughput.py env=matrix_resq algorithm=resq --out benchmarks/results/matrix_resq.json
    python benchmarks/throughput.py env=predator_prey algorithm=resq data.n_envs=8 --train-steps 20000
    python benchmarks/throughput.py env=lbf agent=mlp algorithm=qmix --epsilon 0.05 --reference 810

Positional arguments are Hydra overrides; the data module and learner are built from them exactly as
`python -m resq.run` builds a run. Printed (and written to --out as JSON):

- raw:        env steps/s of the B = data.n_envs training envs with uniform random available actions
              (no policy, no buffer; in inference mode, as the collector runs);
- collection: env steps/s of `EpisodeCollector.collect` with the policy acting at --epsilon (< 1, so
              the forward pass runs every step) plus the buffer insert: what a training epoch pays
              for its data;
- update:     ms per gradient step on a sampled batch of data.batch_size episodes (losses, backward,
              clipping, optimizer step, outside Lightning), and ms per `buffer.sample`;
- training:   env steps/s of the full training loop, `resq.run.train` through Lightning on the same
              overrides, timed by a callback from the first to the last training batch (the buffer
              warm-up excluded), evaluation time taken out; --train-steps env steps; checkpoints are
              off (checkpoint_interval=null) and the run evaluates only at its end (test_interval =
              t_max, eval_at_start=false), so what is timed is collection + updates + Lightning;
- memory:     peak resident set size of this process (ru_maxrss), the replay buffer's bytes when
              full and bytes per stored env step (its capacity x episode limit slots);
- ratios:     collection / raw, training / raw, training / collection, the share of a training
              step's time spent in updates, and training / --reference (a peer's env steps/s).

Every rate is given twice: per wall-clock second and per CPU second of this process
(`time.process_time`). On a shared machine the CPU-second rate is the steadier one: a process that
waits for a core accrues no CPU time. Each figure is the median of --repeats interleaved blocks, with
the spread. The load average before and after is recorded.

When the training env steps shares of its copies in worker processes (`env.workers`) or its rollouts
run in a worker (`data.rollout_worker=true`; `RolloutDataModule.worker_pids` lists them all), the CPU of
this process leaves theirs out, so one more rate is given: per CPU second of this process and
its workers together ("cpu_all", from /proc/<pid>/stat in 10 ms ticks, Linux): what the work costs.
On idle cores the processes run in parallel, so the wall clock can beat it (at best by the number of
cores); on a loaded machine neither CPU rate says what the wall clock of an idle one would be. With the
rollout worker the update share and loop overhead are not computed: updates overlap collection.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from envs import BatchedEnv
from resq.data.episodes import EpisodeBuffer
from resq.data.exploration import full_exploration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from update_cost import build, compose_run, fill_buffer, update_step


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another live process, from /proc/<pid>/stat (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clock:
    """Wall and process-CPU seconds since `start()`, and the CPU seconds of the worker processes `pids`."""

    def __init__(self, pids: list[int] | tuple = ()) -> None:
        self.pids = list(pids)
        self.start()

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.workers = [process_cpu(pid) for pid in self.pids]

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu

    def read_workers(self) -> list[float]:
        return [process_cpu(pid) - start for pid, start in zip(self.pids, self.workers)]


def rates(steps: float, wall: float, cpu: float, workers: list[float]) -> dict[str, float]:
    """Steps per wall s and per CPU s of this process; with workers also per CPU s of all the processes
    ("cpu_all")."""
    out = {"wall": steps / wall, "cpu": steps / cpu, "steps": steps}
    if workers:
        out.update(cpu_all=steps / (cpu + sum(workers)), worker_cpu_s=workers, main_cpu_s=cpu)
    return out


def worker_pids(env) -> list[int]:
    return list(getattr(env, "worker_pids", []))


def random_actions(env: BatchedEnv, avail: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    spec = env.spec
    if spec.discrete:
        return full_exploration(avail, generator)
    low, high = torch.tensor(spec.action_low), torch.tensor(spec.action_high)
    return low + (high - low) * torch.rand(env.n_envs, spec.n_agents, spec.action_dim, generator=generator)


@torch.inference_mode()
def raw_rollout(env: BatchedEnv, generator: torch.Generator) -> int:
    """One batch of episodes with uniform random actions; returns the env steps taken (as t_env counts).
    In inference mode, as the collector steps envs: a torch env's own ops are cheaper there (without it
    predator-prey's raw rate was below its collection rate)."""
    step = env.reset()
    active = torch.ones(env.n_envs, dtype=torch.bool)
    steps = 0
    for _ in range(env.spec.episode_limit):
        step = env.step(random_actions(env, step.avail, generator))
        steps += int(active.sum())
        active = active & ~step.done
        if not active.any():
            break
    return steps


def rate(fn, min_steps: int, pids: list[int] | tuple = ()) -> dict[str, float]:
    """Env steps per wall and per CPU second of `fn() -> steps`, called until `min_steps` are done (and
    per CPU second with the worker processes `pids`, see `rates`)."""
    clock, steps = Clock(pids), 0
    while steps < min_steps:
        steps += fn()
    wall, cpu = clock.read()
    return rates(steps, wall, cpu, clock.read_workers())


def per_call_ms(fn, calls: int) -> dict[str, float]:
    clock = Clock()
    for _ in range(calls):
        fn()
    wall, cpu = clock.read()
    return {"wall": 1e3 * wall / calls, "cpu": 1e3 * cpu / calls, "calls": calls}


class LoopTimer(pl.Callback):
    """Times the training loop between the first and the last training batch, evaluation taken out.

    Lightning fetches a batch ahead, so at the start of batch k the rollouts of batch k+1 are done; the
    env steps between two batch starts and the updates between them belong together (one rollout, then
    `updates_per_rollout` updates), whatever that offset."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float, int, list[float]]] = []  # (wall, cpu, t_env, workers' cpu) per batch
        self.eval_wall = self.eval_cpu = 0.0
        self._eval: Clock | None = None
        self._clock: Clock | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._clock is None:  # the training env (and its workers) exists by the first batch
            self._clock = Clock(trainer.datamodule.worker_pids)
        wall, cpu = self._clock.read()
        self.marks.append((wall - self.eval_wall, cpu - self.eval_cpu, trainer.datamodule.t_env,
                           self._clock.read_workers()))

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self._clock is not None:
            self._eval = Clock()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._eval is not None:
            wall, cpu = self._eval.read()
            self.eval_wall, self.eval_cpu = self.eval_wall + wall, self.eval_cpu + cpu
            self._eval = None

    def result(self) -> dict[str, float]:
        if len(self.marks) < 3:
            raise RuntimeError(f"only {len(self.marks)} training batches were timed: raise --train-steps well above "
                               f"the buffer warm-up (data.batch_size episodes)")
        (w0, c0, t0, k0), (w1, c1, t1, k1) = self.marks[0], self.marks[-1]
        workers = [b - a for a, b in zip(k0, k1)]  # the rollout worker, the training env's workers (not the test env's)
        return {**rates(t1 - t0, w1 - w0, c1 - c0, workers), "updates": len(self.marks) - 1,
                "eval_wall_s": self.eval_wall}


def training_rate(overrides: list[str], train_steps: int) -> dict[str, float]:
    from resq.run import train

    cfg, choices = compose_run(overrides)
    with open_dict(cfg):
        cfg.t_max = train_steps
        cfg.test_interval = train_steps
        cfg.checkpoint_interval = None
        cfg.eval_at_start = False
        cfg.trainer.enable_progress_bar = False
    timer = LoopTimer()
    with tempfile.TemporaryDirectory(prefix="resq_throughput_") as out:
        train(cfg, out, choices, callbacks=[timer])
    return timer.result()


def buffer_bytes(buffer: EpisodeBuffer) -> dict[str, float]:
    storage = buffer._storage
    fields = {name: getattr(storage, name) for name in ("obs", "state", "avail", "actions", "reward", "terminated",
                                                        "filled", "battle_won")}
    total = sum(t.numel() * t.element_size() for t in fields.values())
    slots = buffer.capacity * buffer.spec.episode_limit
    return {
        "buffer_bytes_full": total,
        "bytes_per_env_step": total / slots,
        "bytes_per_env_step_by_field": {k: t.numel() * t.element_size() / slots for k, t in fields.items()},
        "dtypes": {k: str(t.dtype).removeprefix("torch.") for k, t in fields.items()},
    }


def bare_gym_rate(key: str, min_steps: int) -> dict[str, float]:
    """Env steps/s of one gymnasium env stepped through its own API with uniform random actions (no
    adapter, no torch): the figure peers quote for "the env alone" (e.g. lbforaging's)."""
    import warnings

    import gymnasium
    import numpy as np

    if key.startswith("Foraging"):
        import lbforaging  # noqa: F401  (registers the Foraging-* ids)
    env = gymnasium.make(key, disable_env_checker=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    sizes = [space.n for space in env.action_space.spaces]

    def episode() -> int:
        steps = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while True:
                _, _, terminated, truncated, _ = env.step(tuple(int(rng.integers(n)) for n in sizes))
                steps += 1
                if np.all(terminated) or np.all(truncated):
                    env.reset()
                    return steps

    return rate(episode, min_steps)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_parts(cfg, choices, args) -> dict:
    """Raw, collection, update and sample figures (interleaved blocks) on one build of the run; its
    replay buffer is freed when this returns."""
    datamodule, learner = build(cfg, choices)
    env = datamodule.train_env
    generator = torch.Generator().manual_seed(1)
    collector = fill_buffer(datamodule, learner, args.epsilon)
    update = update_step(learner)
    buffer = datamodule.buffer

    def collect() -> int:
        episodes = collector.collect(learner, args.epsilon)
        buffer.insert(episodes)
        return episodes.n_steps

    batch = buffer.sample(datamodule.batch_size, datamodule.generator)
    out: dict = {"raw": [], "collection": [], "update_ms": [], "sample_ms": []}
    pids = worker_pids(env)
    for _ in range(args.repeats):
        out["raw"].append(rate(lambda: raw_rollout(env, generator), args.steps, pids))
        out["collection"].append(rate(collect, args.steps, pids))
        fixed = buffer.sample(datamodule.batch_size, datamodule.generator)
        update(fixed)  # warm-up
        out["update_ms"].append(per_call_ms(lambda b=fixed: update(b), args.updates))
        out["sample_ms"].append(per_call_ms(lambda: buffer.sample(datamodule.batch_size, datamodule.generator),
                                            args.updates))
    out["stored"] = buffer_bytes(buffer)
    out["info"] = {
        "n_envs": env.n_envs, "n_agents": env.spec.n_agents, "episode_limit": env.spec.episode_limit,
        "env_workers": len(pids), "rollout_worker": bool(cfg.data.get("rollout_worker", False)),
        "batch_size": datamodule.batch_size, "updates_per_rollout": datamodule.updates_per_rollout,
        "batch_mean_episode_length": float(batch.lengths.float().mean()),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m resq.run")
    parser.add_argument("--epsilon", type=float, default=0.05,
                        help="exploration during the collection and training measurements (< 1: the policy acts)")
    parser.add_argument("--steps", type=int, default=5000, help="env steps per raw / collection block")
    parser.add_argument("--updates", type=int, default=50, help="gradient steps per update block")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved blocks of raw, collection, update")
    parser.add_argument("--train-steps", type=int, default=20000, help="t_max of the timed training run (0: none)")
    parser.add_argument("--train-repeats", type=int, default=1, help="timed training runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's torch_threads)")
    parser.add_argument("--reference", type=float, default=None, help="a peer's training env steps/s, for a ratio")
    parser.add_argument("--gym-key", default=None,
                        help="also time this gymnasium env alone (e.g. Foraging-8x8-2p-3f-v3), for ratios to it")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args()

    overrides = [*args.overrides, f"exploration.epsilon_start={args.epsilon}", f"exploration.epsilon_finish={args.epsilon}"]
    cfg, choices = compose_run(overrides)
    threads = args.threads or int(cfg.torch_threads)
    torch.set_num_threads(threads)
    overrides.append(f"torch_threads={threads}")
    load_before = os.getloadavg()

    parts = measure_parts(cfg, choices, args)
    bare = [bare_gym_rate(args.gym_key, args.steps) for _ in range(args.repeats if args.gym_key else 0)]
    gc.collect()  # one replay buffer at a time: a predator-prey buffer of float32 observations is 3.7 GB
    training = [training_rate(overrides, args.train_steps) for _ in range(args.train_repeats if args.train_steps else 0)]
    load_after = os.getloadavg()

    info = parts["info"]
    results: dict = {
        "overrides": args.overrides,
        "choices": {k: choices.get(k) for k in ("env", "algorithm", "agent", "main_function", "residual_function")},
        **info, "epsilon": args.epsilon, "torch_threads": threads,
    }
    raw, collection, update_ms, sample_ms = parts["raw"], parts["collection"], parts["update_ms"], parts["sample_ms"]
    clocks = ["wall", "cpu"] + (["cpu_all"] if info["env_workers"] or info["rollout_worker"] else [])
    results["clocks"] = clocks

    def pick(x: dict, clock: str) -> float:  # updates, samples and the bare env run in this process only
        return x[clock] if clock in x else x["cpu"]

    for clock in clocks:
        r = {
            "raw_steps_per_s": summary([pick(x, clock) for x in raw]),
            "collection_steps_per_s": summary([pick(x, clock) for x in collection]),
            "update_ms": summary([pick(x, clock) for x in update_ms]),
            "sample_ms": summary([pick(x, clock) for x in sample_ms]),
        }
        if training:
            r["training_steps_per_s"] = summary([pick(x, clock) for x in training])
        med = {k: v["median"] for k, v in r.items()}
        steps_per_update = info["n_envs"] * info["batch_mean_episode_length"] / max(info["updates_per_rollout"], 1)
        if bare:
            r["bare_gym_steps_per_s"] = summary([pick(x, clock) for x in bare])
            med["bare_gym_steps_per_s"] = r["bare_gym_steps_per_s"]["median"]
        r["ratios"] = {"collection_over_raw": med["collection_steps_per_s"] / med["raw_steps_per_s"]}
        if bare:
            r["ratios"]["raw_over_bare_gym"] = med["raw_steps_per_s"] / med["bare_gym_steps_per_s"]
        if training:
            r["ratios"].update({
                "training_over_raw": med["training_steps_per_s"] / med["raw_steps_per_s"],
                "training_over_collection": med["training_steps_per_s"] / med["collection_steps_per_s"],
            })
        if training and not info["rollout_worker"]:  # (with the rollout worker, updates overlap collection)
            # of one training step's time (steps_per_update env steps + one update), the share in the update
            r["ratios"]["update_share_of_training"] = (
                (med["update_ms"] / 1e3) * med["training_steps_per_s"] / steps_per_update)
            # what a training step costs beyond its update, its buffer sample and its share of collection
            # measured alone: Lightning's loop, hooks and logging, the data module's bookkeeping, and the
            # parts running slower inside the loop than alone (each evicts the other's caches; py-spy
            # puts Lightning's own frames at ~2% of the lbforaging loop, docs/performance.md)
            loop_ms = 1e3 * steps_per_update / med["training_steps_per_s"]
            parts_ms = med["update_ms"] + med["sample_ms"] + 1e3 * steps_per_update / med["collection_steps_per_s"]
            r["loop_overhead_ms_per_update"] = loop_ms - parts_ms
            r["ratios"]["loop_overhead_share_of_training"] = (loop_ms - parts_ms) / loop_ms
        if bare and training:
            r["ratios"]["training_over_bare_gym"] = med["training_steps_per_s"] / med["bare_gym_steps_per_s"]
        if args.reference and training:
            r["ratios"]["training_over_reference"] = med["training_steps_per_s"] / args.reference
        results[clock] = r
    results["training_runs"] = training
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.update(parts["stored"])
    results["machine"] = {"load_before": load_before, "load_after": load_after, "cpus": os.cpu_count(),
                          "python": platform.python_version(), "torch": torch.__version__}
    print(report(results, args.reference))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


def report(r: dict, reference: float | None) -> str:
    c = r["choices"]
    clocks = r.get("clocks", ["wall", "cpu"])
    workers = f", {r['env_workers']} env worker processes" if r.get("env_workers") else ""
    if r.get("rollout_worker"):
        workers += ", rollouts in a worker process (overlapping updates)"
    title = (f"{c['algorithm']} on {c['env']} (agent {c['agent']}), B={r['n_envs']} envs{workers}, N={r['n_agents']}, "
             f"batch {r['batch_size']}, epsilon {r['epsilon']}, {r['torch_threads']} torch thread(s); "
             f"load average {r['machine']['load_before'][0]:.1f} -> {r['machine']['load_after'][0]:.1f}")
    heads = {"wall": "per wall s", "cpu": "per CPU s (this process)", "cpu_all": "per CPU s (with its workers)"}
    lines = [title, "", "| figure | " + " | ".join(heads[k] for k in clocks) + " |", "|---" * (len(clocks) + 1) + "|"]

    def row(name: str, key: str, fmt: str) -> None:
        cells = [f"{fmt.format(r[k][key]['median'])} ({fmt.format(r[k][key]['min'])}-{fmt.format(r[k][key]['max'])})"
                 for k in clocks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    if "bare_gym_steps_per_s" in r["wall"]:
        row("the gymnasium env alone, steps/s", "bare_gym_steps_per_s", "{:,.0f}")
    row("raw env steps/s (random actions)", "raw_steps_per_s", "{:,.0f}")
    row("collection steps/s (policy acting)", "collection_steps_per_s", "{:,.0f}")
    if "training_steps_per_s" in r["wall"]:
        row("training-loop env steps/s (Lightning)", "training_steps_per_s", "{:,.0f}")
    row("ms per update", "update_ms", "{:.2f}")
    row("ms per buffer sample", "sample_ms", "{:.2f}")
    if "loop_overhead_ms_per_update" in r["wall"]:
        lines.append("| loop overhead, ms per update (Lightning, bookkeeping, parts slower in the loop than alone) | "
                     + " | ".join(f"{r[k]['loop_overhead_ms_per_update']:.2f}" for k in clocks) + " |")
    for name in r["wall"]["ratios"]:
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(f"{r[k]['ratios'][name]:.3f}" for k in clocks) + " |")
    lines += ["", f"peak RSS {r['peak_rss_mb']:,.0f} MB; replay buffer when full {r['buffer_bytes_full'] / 2**20:,.1f} MB = "
              f"{r['bytes_per_env_step']:,.0f} bytes per stored env step ("
              + ", ".join(f"{k} {v:,.0f} {r['dtypes'][k]}" for k, v in r["bytes_per_env_step_by_field"].items() if v) + ")"]
    if reference:
        lines.append(f"reference: {reference:,.0f} env steps/s (a peer, measured elsewhere)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
