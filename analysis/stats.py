"""Who is who (method labels, panels) and the numbers every table, figure and claim shares.

Method label: the algorithm; `algorithm[main=..,residual=..]` where one algorithm ran with several main or
residual functions; plus `[key=value]` for every `algorithm.*` config key that differs between that
algorithm's runs for a reason other than the seed or the env (e.g. FOP's final temperature in FOP Table 2).

Panel: one per env and setting. A setting key is a config key under the figure's prefixes (default `env.`
and `exploration.`) that differs between the selected runs and is not fixed by a single run column
(algorithm, seed, env, main or residual function): e.g. `env.punishment` in a predator-prey sweep, but not
an exploration schedule that differs per algorithm, and not `env.seed`.

Standard error: sample standard deviation (ddof = 1) over seeds / sqrt(n), as seaborn's errorbar="se";
nan for a single seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from analysis.runs import GROUP_COLUMNS, RUN_COLUMNS

DEFAULT_PANEL_PREFIXES = ("env.", "exploration.")


def _is_function_of(values: pd.Series, by: pd.Series) -> bool:
    """True when `values` is constant within every group of `by` (so `by` alone explains it)."""
    frame = pd.DataFrame({"v": values.map(repr).to_numpy(), "b": by.map(repr).to_numpy()})
    return bool((frame.groupby("b")["v"].nunique() <= 1).all())


def varying_keys(configs: pd.Series, prefixes: Sequence[str], explained_by: pd.DataFrame) -> list[str]:
    """Config keys under `prefixes` that differ across `configs` (one flattened config per run) and are
    not explained by any single column of `explained_by` (same index)."""
    keys = sorted({k for c in configs for k in c if any(k.startswith(p) for p in prefixes)})
    chosen = []
    for key in keys:
        values = configs.map(lambda c, k=key: c.get(k))
        if values.map(repr).nunique() <= 1:
            continue
        if any(values.map(repr).nunique() > 1 and _is_function_of(values, explained_by[c])
               and explained_by[c].map(repr).nunique() > 1 for c in explained_by.columns):
            continue
        chosen.append(key)
    return chosen


def format_value(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def method_labels(runs: pd.DataFrame) -> pd.Series:
    """One label per run (index of `runs`, which needs the run columns and `config`)."""
    labels = pd.Series("", index=runs.index, dtype=object)
    for algorithm, group in runs.groupby("algorithm"):
        parts = group[["main_function", "residual_function"]].nunique().max() > 1
        configs = group["config"] if "config" in group else pd.Series([{}] * len(group), index=group.index)
        variants = varying_keys(configs, ("algorithm.",), group[["seed", "env", "main_function", "residual_function"]])
        for index, row in group.iterrows():
            extras = []
            if parts:
                extras += [f"main={row['main_function']}", f"residual={row['residual_function']}"]
            extras += [f"{key.rsplit('.', 1)[-1]}={format_value(configs[index].get(key))}" for key in variants]
            labels[index] = f"{algorithm}[{','.join(extras)}]" if extras else str(algorithm)
    return labels


def variant_values(runs: pd.DataFrame) -> pd.Series:
    """Per run, the value of its algorithm's single varying `algorithm.*` key (None when there is not
    exactly one): what a paper entry's `variant` is matched against."""
    values = pd.Series(None, index=runs.index, dtype=object)
    for _, group in runs.groupby("algorithm"):
        configs = group["config"] if "config" in group else pd.Series([{}] * len(group), index=group.index)
        keys = varying_keys(configs, ("algorithm.",), group[["seed", "env", "main_function", "residual_function"]])
        if len(keys) == 1:
            for index in group.index:
                values[index] = configs[index].get(keys[0])
    return values


def panel_labels(runs: pd.DataFrame, prefixes: Sequence[str] = DEFAULT_PANEL_PREFIXES,
                 keys: Sequence[str] | None = None) -> tuple[pd.Series, list[str]]:
    """(one panel label per run, the setting keys used). `keys` overrides the automatic choice."""
    configs = runs["config"] if "config" in runs else pd.Series([{}] * len(runs), index=runs.index)
    if keys is None:
        keys = varying_keys(configs, prefixes, runs[[c for c in RUN_COLUMNS if c in runs]])
    labels = []
    for index, row in runs.iterrows():
        settings = [f"{key.rsplit('.', 1)[-1]}={format_value(configs[index].get(key))}" for key in keys]
        labels.append(", ".join([str(row["env"])] + settings))
    return pd.Series(labels, index=runs.index, dtype=object), list(keys)


def matches(record: dict, selector: dict) -> bool:
    """A run (its columns plus flattened `config`) against {column or config key: value}."""
    config = record.get("config") or {}
    for key, wanted in selector.items():
        value = record[key] if key in record and key != "config" else config.get(key)
        if not same(value, wanted):
            return False
    return True


def same(value, wanted) -> bool:
    """value equals wanted (numbers within rounding); a list wanted = any of; {"not": v} = anything but v."""
    if isinstance(wanted, dict) and set(wanted) == {"not"}:
        return not same(value, wanted["not"])
    if isinstance(wanted, (list, tuple)) and not isinstance(value, (list, tuple)):
        return any(same(value, w) for w in wanted)
    try:
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return str(value) == str(wanted)


def mean_se(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, standard error with ddof = 1, n) over the finite values; se is nan for n < 2."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(array)
    if n == 0:
        return math.nan, math.nan, 0
    se = float(array.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(array.mean()), se, n


def final_scores(metrics: pd.DataFrame, metric: str, last: int = 1) -> pd.DataFrame:
    """One row per run (per run and panel, where a run is drawn in several panels): its mean `metric` over
    its last `last` evaluations (column `score`)."""
    if last < 1:
        raise ValueError(f"--last must be >= 1 (got {last})")
    keys = ["run_dir", "panel"] if "panel" in metrics.columns else ["run_dir"]
    rows = []
    for _, group in metrics.groupby(keys, sort=False, dropna=False):
        tail = group.sort_values("t_env").tail(last)
        row = tail.iloc[-1].to_dict()
        row["score"] = float(pd.to_numeric(tail[metric], errors="coerce").mean())
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_scores(scores: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """mean, se, n of `score` per group of `by`."""
    rows = []
    for key, group in scores.groupby(list(by), sort=False):
        mean, se, n = mean_se(group["score"])
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "mean": mean, "se": se, "n": n})
    return pd.DataFrame(rows, columns=[*by, "mean", "se", "n"])


def curve_stats(metrics: pd.DataFrame, metric: str, by: Sequence[str]) -> pd.DataFrame:
    """mean, se, n of `metric` per group of `by` and evaluation `step` (seeds aligned on the grid)."""
    rows = []
    for key, group in metrics.groupby([*by, "step"], sort=True):
        mean, se, n = mean_se(pd.to_numeric(group[metric], errors="coerce"))
        rows.append({**dict(zip([*by, "step"], key)), "mean": mean, "se": se, "n": n})
    return pd.DataFrame(rows, columns=[*by, "step", "mean", "se", "n"])


def fmt_mean_se(mean: float, se: float, n: int, digits: int = 2) -> str:
    if n == 0 or not np.isfinite(mean):
        return "–"
    if not np.isfinite(se):
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {se:.{digits}f} (n={n})"


def natural_key(text: str) -> list:
    """Sort key that orders the numbers inside labels by value ("p=-4" < "p=-2" < "p=0" < "p=10")."""
    return [(0, float(part), "") if re.fullmatch(r"-?\d+(\.\d+)?", part) else (1, 0.0, part)
            for part in re.split(r"(-?\d+(?:\.\d+)?)", str(text)) if part]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


__all__ = ["GROUP_COLUMNS", "curve_stats", "final_scores", "fmt_mean_se", "matches", "mean_se", "method_labels",
           "panel_labels", "same", "slug", "summarise_scores", "variant_values", "varying_keys"]
