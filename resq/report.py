"""What a run prints when it ends: a readable summary, and the learned table for matrix games."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def action_name(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else str(index)


def print_summary(run: dict[str, Any], last: dict[str, Any], matrix: dict[str, Any] | None, console: Console | None = None) -> None:
    console = console or Console()
    title = (
        f"{run.get('algorithm')} (main={run.get('main_function')}, residual={run.get('residual_function')}) "
        f"on {run.get('env')}, seed {run.get('seed')}"
    )
    console.print(f"[bold]{title}[/bold]")
    if last:
        parts = [f"after {last.get('t_env')} env steps:"]
        for key in ("test/return_mean", "test/battle_won_mean", "test/igm_violation"):
            if key in last:
                parts.append(f"{key} = {last[key]:.3f}")
        console.print("  ".join(parts))
    if matrix:
        console.print(matrix_table(matrix))
        greedy = tuple(matrix["greedy_joint_action"])
        optimal = tuple(matrix["optimal_joint_action"])
        verdict = "[green]optimal[/green]" if greedy == optimal else "[red]not optimal[/red]"
        names = ",".join(action_name(a) for a in greedy)
        console.print(
            f"greedy joint action ({names}) is {verdict} (payoff optimum "
            f"({','.join(action_name(a) for a in optimal)})); max |q_joint - payoff| = {matrix['max_abs_error']:.3f}"
        )


def matrix_table(matrix: dict[str, Any]) -> Table:
    """The two-agent table: rows agent 1, columns agent 2, learned joint value (payoff in brackets)."""
    q_joint, payoff, q_agents = matrix["q_joint"], matrix["payoff"], matrix["q_agents"]
    greedy = tuple(matrix["greedy_joint_action"])
    table = Table(title=f"learned {matrix.get('joint_value_name', 'joint value')} [payoff]")
    if len(q_agents) != 2:
        table.add_column("joint action")
        table.add_column("value")
        table.add_row("greedy", ",".join(action_name(a) for a in greedy))
        return table
    table.add_column("u1 \\ u2 (Q_1 | Q_2)")
    for j, q2 in enumerate(q_agents[1]):
        table.add_column(f"{action_name(j)} ({q2:.2f})", justify="right")
    for i, q1 in enumerate(q_agents[0]):
        cells = []
        for j in range(len(q_agents[1])):
            cell = f"{q_joint[i][j]:.2f} [{payoff[i][j]:g}]"
            cells.append(f"[bold]{cell}[/bold]" if (i, j) == greedy else cell)
        table.add_row(f"{action_name(i)} ({q1:.2f})", *cells)
    return table
