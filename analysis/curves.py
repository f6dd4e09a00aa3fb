"""`python -m analysis curves RUNS_DIR`: test return / win-rate curves against env steps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.runs import load_metrics, method_labels  # noqa: E402


def curves_command(runs_dir: str, metric: str = "test/return_mean", out: str | None = None) -> str:
    frame = load_metrics(runs_dir)
    if metric not in frame.columns:
        available = sorted(c for c in frame.columns if c.startswith("test/"))
        raise SystemExit(f"metric {metric!r} is not in these runs; available: {', '.join(available)}")
    frame = frame.assign(method=method_labels(frame))
    out_dir = Path(out) if out else Path(runs_dir) / "analysis"
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = sns.relplot(data=frame, x="t_env", y=metric, hue="method", col="env", kind="line",
                       errorbar="se", height=3.2, aspect=1.3, facet_kws={"sharey": False})
    grid.set_axis_labels("environment steps", metric)
    path = out_dir / f"curves_{metric.replace('/', '_')}.png"
    grid.savefig(path, dpi=120)
    plt.close(grid.figure)
    last = frame.sort_values("t_env").groupby(["env", "method", "seed"]).tail(1)
    final = last.groupby(["env", "method"])[metric].agg(["mean", "std", "count"]).reset_index()
    return final.to_markdown(index=False, floatfmt=".3f") + f"\n\nwritten: {path}\n"
