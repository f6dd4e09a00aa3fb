"""Figures in the papers' layouts (seaborn; PNG and PDF): learning curves with a standard-error band over
seeds, one panel per map or setting, one colour per method (analysis.palette); matrix-game heatmaps; and
FOP's MTQ reward surface with each seed's learning path of joint actions."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.lines
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from analysis.curves import CurveData
from analysis.palette import colour, palette_for
from analysis.render import save_figure

sns.set_theme(style="whitegrid", context="paper")


def _steps_label(value: float, _position=None) -> str:
    """Env-step ticks as 0, 250k, 1.5M: full integers run into each other on a 1M-step axis."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _format_steps_axis(ax) -> None:
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_steps_label))


def _legend_handles(methods: list[str], colours: dict[str, str],
                    names: dict[str, str] | None = None) -> list[matplotlib.lines.Line2D]:
    names = names or {}
    return [matplotlib.lines.Line2D([], [], color=colours[m], linewidth=2,
                                    label=f"{names[m]}: {m}" if m in names else m) for m in methods]


def curves_axes(data: CurveData, title: str = "", ylabel: str | None = None,
                y_range: tuple[float, float] | None = None, names: dict[str, str] | None = None,
                footnote: str = "") -> plt.Figure:
    """Metric against env steps: mean over seeds and a standard-error band, a panel per map/setting.

    One legend beside the panels when every panel shows the same methods (Fig. 3, Fig. 4); otherwise a legend
    under each panel with that panel's methods only (Fig. 5's ablation groups). `y_range`: the metric's
    possible range (a win rate's 0..1): the axis stays inside it and spans at least a tenth of it, so a
    curve flat at 0 is drawn at the bottom of the axis rather than in the middle of a +-0.04 one. `names`:
    the paper's legend name of a method label, shown before the label. `footnote`: a line under the figure
    (the runs it leaves out)."""
    panels = data.panels
    methods = data.methods
    colours = palette_for(methods)
    frame = data.frame
    named = [m for m in (names or {}) if m in methods]  # the paper's legend order first, then by label
    order = named + [m for m in methods if m not in named]
    in_panel = {p: [m for m in order if m in set(frame.loc[frame["panel"] == p, "method"])] for p in panels}
    shared = len({tuple(v) for v in in_panel.values()}) == 1
    cols = 2 if len(panels) == 4 else min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    legend_height = 0.0 if shared else 0.35 + 0.17 * max(len(v) for v in in_panel.values())
    width = 4.1 * cols + (0.25 * max(len(m) for m in methods) + 0.6 if shared else 0.0)
    fig, axes = plt.subplots(rows, cols, figsize=(width, (3.0 + legend_height) * rows), squeeze=False,
                             layout="constrained")
    for ax, panel in zip(axes.flat, panels):
        sns.lineplot(data=frame[frame["panel"] == panel], x="step", y=data.metric, hue="method",
                     hue_order=in_panel[panel], palette=colours, errorbar="se", ax=ax, legend=False)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel or data.metric)
        _format_steps_axis(ax)
        if y_range is not None:
            low, high = y_range
            bottom, top = ax.get_ylim()
            bottom, top = max(bottom, low), min(top, high)
            top = max(top, bottom + 0.1 * (high - low))
            pad = 0.02 * (high - low)
            ax.set_ylim(bottom - pad, min(top, high) + pad)
        if not shared:
            ax.legend(handles=_legend_handles(in_panel[panel], colours, names), loc="upper center",
                      bbox_to_anchor=(0.5, -0.2), fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if shared:
        fig.legend(handles=_legend_handles(order, colours, names), title="method", loc="outside right center",
                   frameon=False)
    if title:
        fig.suptitle(title)
    if footnote:
        fig.supxlabel(footnote, fontsize=7, ha="left", x=0.01, color="dimgray")
    return fig


def curves_figure(data: CurveData, path_stem: Path, title: str = "", ylabel: str | None = None,
                  y_range: tuple[float, float] | None = None, names: dict[str, str] | None = None,
                  footnote: str = "") -> list[Path]:
    """`curves_axes`, saved as PNG and PDF."""
    fig = curves_axes(data, title, ylabel, y_range, names, footnote)
    paths = save_figure(fig, path_stem)
    plt.close(fig)
    return paths


def _nan_matrix(values) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)


def matrix_figure(rows: list[tuple[str, np.ndarray, str, np.ndarray | None]], payoff: np.ndarray,
                  path_stem: Path, title: str = "") -> list[Path]:
    """One row per method: our mean table over seeds, the paper's beside it (when it has one), the payoff.
    `rows` holds (method, ours, paper label, paper's matrix or None)."""
    n_cols = 3
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(3.3 * n_cols, 2.9 * len(rows)), squeeze=False)
    labels = [chr(ord("A") + j) for j in range(payoff.shape[1])]
    for ax_row, (method, ours, paper_label, paper) in zip(axes, rows):
        panels = [(f"{method}: ours (mean over seeds)", ours), (paper_label or "not in the paper", paper),
                  ("payoff", payoff)]
        finite = [np.abs(p[np.isfinite(p)]).max() for _, p in panels if p is not None and np.isfinite(p).any()]
        lim = max(finite) if finite else 1.0
        for ax, (name, values) in zip(ax_row, panels):
            if values is None:
                ax.axis("off")
                ax.set_title(name, fontsize=8)
                continue
            sns.heatmap(values, annot=True, fmt=".2f", cmap="RdBu", vmin=-lim, vmax=lim, cbar=False, ax=ax,
                        xticklabels=labels, yticklabels=labels[: values.shape[0]], square=True)
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("agent 2")
            ax.set_ylabel("agent 1")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    paths = save_figure(fig, path_stem)
    plt.close(fig)
    return paths


def load_mtq_reward() -> Callable:
    """envs.mtq.max_of_two_quadratics, imported only when an MTQ figure is drawn."""
    from envs.mtq import max_of_two_quadratics

    return max_of_two_quadratics


def reward_grid(reward_fn: Callable, lim: float, n: int = 201) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import torch

    axis = np.linspace(-lim, lim, n)
    u1, u2 = np.meshgrid(axis, axis, indexing="ij")
    actions = torch.as_tensor(np.stack([u1, u2], axis=-1), dtype=torch.float64)  # (n, n, 2)
    reward = reward_fn(actions)
    reward = reward.detach().cpu().numpy() if hasattr(reward, "detach") else np.asarray(reward)
    if reward.shape != u1.shape:
        raise ValueError(f"the MTQ reward function maps (..., 2) actions to (...) rewards; got {reward.shape} "
                         f"for actions of shape {tuple(actions.shape)}")
    return u1, u2, reward


def mtq_figure(data: CurveData, final_actions: pd.DataFrame, path_stem: Path, reward_fn: Callable | None = None,
               title: str = "", ylabel: str | None = None) -> tuple[list[Path], str]:
    """FOP Fig. 2: (a) the reward surface, (b) learning curves, then one panel per method with each seed's
    path of deterministic joint actions (test/joint_action_0, _1 at every evaluation) on the surface.
    `final_actions` has run_dir and joint_action (from mtq.json). Returns (paths, a note for the user)."""
    note = ""
    if reward_fn is None:
        try:
            reward_fn = load_mtq_reward()
        except ImportError as error:
            note = (f"reward surface left out: envs.mtq.max_of_two_quadratics is not importable ({error}); "
                    "it comes with the MTQ environment (env=mtq)")
    frame = data.frame
    has_paths = {"test/joint_action_0", "test/joint_action_1"} <= set(frame.columns)
    if not has_paths:
        note += ("; " if note else "") + "no test/joint_action_0/1 in metrics.csv: learning paths left out"
    methods = data.methods
    coords = [frame[c].to_numpy(dtype=float) for c in ("test/joint_action_0", "test/joint_action_1") if c in frame]
    extent = max([10.0] + [float(np.nanmax(np.abs(c))) + 1.0 for c in coords if np.isfinite(c).any()])
    surface = reward_grid(reward_fn, extent) if reward_fn is not None else None

    n_panels = 2 + (len(methods) if has_paths else 0)
    cols = min(4, n_panels)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.axis("off")

    def draw_surface(ax, filled: bool) -> None:
        if surface is None:
            return
        u1, u2, reward = surface
        if filled:
            mesh = ax.contourf(u1, u2, reward, levels=30, cmap="viridis")
            fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04)
        else:
            ax.contour(u1, u2, reward, levels=15, cmap="viridis", linewidths=0.6)
        ax.set_xlabel("agent 1's action")
        ax.set_ylabel("agent 2's action")
        ax.set_aspect("equal")

    flat[0].set_title("(a) reward surface")
    if surface is None:
        flat[0].text(0.5, 0.5, "reward function\nnot available", ha="center", va="center", transform=flat[0].transAxes)
    draw_surface(flat[0], filled=True)
    sns.lineplot(data=frame, x="step", y=data.metric, hue="method", hue_order=methods, palette=palette_for(methods),
                 errorbar="se", ax=flat[1])
    flat[1].set_title("(b) learning curves")
    flat[1].set_xlabel("environment steps")
    _format_steps_axis(flat[1])
    flat[1].set_ylabel(ylabel or data.metric)
    if has_paths:
        finals = final_actions.set_index("run_dir")["joint_action"] if len(final_actions) else pd.Series(dtype=object)
        for i, (ax, method) in enumerate(zip(flat[2:], methods)):
            draw_surface(ax, filled=False)
            for run_dir, path in frame[frame["method"] == method].groupby("run_dir"):
                path = path.sort_values("t_env")
                x, y = path["test/joint_action_0"].to_numpy(float), path["test/joint_action_1"].to_numpy(float)
                ax.plot(x, y, "-", color=colour(method), alpha=0.7, linewidth=1.0, marker=".", markersize=3)
                ax.plot(x[:1], y[:1], "o", color="black", markersize=3)
                end = finals.get(run_dir)
                end = end if isinstance(end, (list, tuple)) and len(end) == 2 else (x[-1], y[-1])
                ax.plot([end[0]], [end[1]], "*", color=colour(method), markeredgecolor="black", markersize=9)
            ax.set_xlim(-extent, extent)
            ax.set_ylim(-extent, extent)
            ax.set_title(f"({chr(ord('c') + i)}) {method}: learning paths")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    paths = save_figure(fig, path_stem)
    plt.close(fig)
    return paths, note
