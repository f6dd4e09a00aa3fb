"""Before / after in one script run: the same fixed-seed training run with two checkouts, alternated.

    python benchmarks/ab.py --base main -- algorithm=resq env=matrix_resq t_max=6000 test_interval=2000
    python benchmarks/ab.py --base main --rounds 3 --throughput "--steps 2000 --updates 30" -- env=...

`--base` is a git revision (exported with `git archive` into a temporary directory) or a directory
holding another checkout; the other side is this checkout. Each round runs `python -m resq.run
<overrides>` once with each checkout (alternating which goes first), in a fresh process whose
imports resolve to that checkout (PYTHONPATH), with checkpoints and the progress bar off, and
records its CPU seconds (user + sys of the child, which a busy machine inflates far less than wall
time) and wall seconds. The runs' metrics.csv files are compared: identical files mean the change
kept the run's behaviour bit for bit; otherwise the largest difference per column is printed.
With --throughput, benchmarks/throughput.py (without its training run) is also run with each checkout
and its medians compared. Prints the ratios base / head (> 1: head is faster) and writes --out JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEAD = HERE.parent


def checkout(base: str, into: Path) -> Path:
    if Path(base).is_dir():
        return Path(base).resolve()
    archive = subprocess.run(["git", "-C", str(HEAD), "archive", base], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], tree: Path, log: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cpu0, wall0 = child_cpu(), time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(cmd, check=False, cwd=tree, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall, cpu = time.perf_counter() - wall0, child_cpu() - cpu0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {tree}; see {log}")
    return cpu, wall


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def compare_metrics(a: list[dict], b: list[dict]) -> dict[str, float] | None:
    """None when identical, else the largest absolute difference per numeric column."""
    if a == b:
        return None
    diffs: dict[str, float] = {"rows": float(len(a) - len(b))}
    for ra, rb in zip(a, b):
        for k in ra.keys() | rb.keys():
            try:
                d = abs(float(ra.get(k, "nan")) - float(rb.get(k, "nan")))
            except ValueError:
                d = 0.0 if ra.get(k) == rb.get(k) else float("inf")
            diffs[k] = max(diffs.get(k, 0.0), d)
    return {k: v for k, v in diffs.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="git revision or directory of the 'before' checkout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--throughput", default=None, help="also run throughput.py with these arguments")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="resq_ab_") as tmp:
        tmp = Path(tmp)
        trees = {"base": checkout(args.base, tmp / "base"), "head": HEAD}
        fixed = ["checkpoint_interval=null", "trainer.enable_progress_bar=false", "logger=none"]
        times: dict[str, list[tuple[float, float]]] = {"base": [], "head": []}
        tput: dict[str, list[dict]] = {"base": [], "head": []}
        metrics: dict[str, list] = {}
        for r in range(args.rounds):
            order = ("base", "head") if r % 2 == 0 else ("head", "base")
            for side in order:
                out = tmp / f"{side}_{r}"
                cmd = [sys.executable, "-m", "resq.run", *args.overrides, *fixed, f"hydra.run.dir={out}"]
                times[side].append(run(cmd, trees[side], tmp / f"{side}_{r}.log"))
                metrics.setdefault(side, read_metrics(out / "metrics.csv"))
                if args.throughput is not None:
                    jout = tmp / f"{side}_{r}.json"
                    cmd = [sys.executable, str(HERE / "throughput.py"), *args.overrides, "--train-steps", "0",
                           "--out", str(jout), *shlex.split(args.throughput)]
                    run(cmd, trees[side], tmp / f"{side}_{r}_throughput.log")
                    tput[side].append(json.loads(jout.read_text()))
        result: dict = {"overrides": args.overrides, "base": args.base, "rounds": args.rounds,
                        "load": os.getloadavg()}
        for side in ("base", "head"):
            result[side] = {"run_cpu_s": [t[0] for t in times[side]], "run_wall_s": [t[1] for t in times[side]]}
        med = {s: statistics.median(result[s]["run_cpu_s"]) for s in ("base", "head")}
        medw = {s: statistics.median(result[s]["run_wall_s"]) for s in ("base", "head")}
        result["run_cpu_ratio_base_over_head"] = med["base"] / med["head"]
        result["run_wall_ratio_base_over_head"] = medw["base"] / medw["head"]
        result["metrics_differences"] = compare_metrics(metrics["base"], metrics["head"])
        lines = [f"resq.run {' '.join(args.overrides)}: {args.rounds} rounds, load average {result['load'][0]:.1f}",
                 f"  CPU s per run  base {med['base']:.1f}  head {med['head']:.1f}  base/head {med['base'] / med['head']:.2f}",
                 f"  wall s per run base {medw['base']:.1f}  head {medw['head']:.1f}  base/head {medw['base'] / medw['head']:.2f}",
                 "  metrics.csv: " + ("identical" if result["metrics_differences"] is None
                                      else f"DIFFERENT, max |diff| per column {result['metrics_differences']}")]
        if args.throughput is not None:
            result["throughput"] = {}
            for key in ("raw_steps_per_s", "collection_steps_per_s", "update_ms", "sample_ms"):
                m = {s: statistics.median(x["cpu"][key]["median"] for x in tput[s]) for s in ("base", "head")}
                faster = m["base"] / m["head"] if key.endswith("ms") else m["head"] / m["base"]
                result["throughput"][key] = {**m, "speedup": faster}
                lines.append(f"  {key} (per CPU s): base {m['base']:,.3f}  head {m['head']:,.3f}  speedup {faster:.2f}x")
        print("\n".join(lines))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
