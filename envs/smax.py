"""SMAX (JaxMARL's JAX re-implementation of SMAC unit micro) as a `BatchedEnv`, on the CPU.

B copies of `HeuristicEnemySMAX` are vmapped and jitted into one reset and one step function; obs,
state, avail and the win come back as torch tensors:

    obs (B, N, O) the allies' "unit_list" observations     state (B, S) SMAX's "world_state"
    avail (B, N, A) get_avail_actions (dead units may only stop)
    reward SMAX's normalised team reward (damage dealt / enemy health + 1 for a win) x reward_scale
    terminated: one team has no unit left      truncated: `max_steps` reached first (bootstrapped)
    battle_won: every enemy dead and an ally alive (derived from unit liveness: SMAX has no info dict)

JaxMARL's `step` resets a finished copy on the spot (auto-reset); this adapter calls `step_env`, which
does not, and freezes finished copies itself (their state is kept, their reward is 0), so an ended copy
keeps returning its last observation until `reset()`, as `envs.base` requires.

SMAX's map list is JaxMARL's plus two scenarios registered here from its `Scenario` mechanism
(8m_vs_9m, 3s_vs_3z). Compiled functions are shared by every SMAXEnv with the same map and settings,
so a run's training and test envs of the same size compile once. This module imports jax only inside
the adapter: `import envs` stays light.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep
from envs.optional import require

SMAX_INSTALL = 'pip install -e ".[smax]"   (or: pip install "jaxmarl>=0.2,<0.3")'

# JaxMARL 0.2's MAP_NAME_TO_SCENARIO, then the scenarios this module registers. Kept as plain data so
# that error messages (envs.smac) can name the maps without importing jax; tests compare it with JaxMARL.
JAXMARL_MAPS = (
    "3m", "2s3z", "25m", "3s5z", "8m", "5m_vs_6m", "10m_vs_11m", "27m_vs_30m", "3s5z_vs_3s6z", "3s_vs_5z",
    "6h_vs_8z", "smacv2_5_units", "smacv2_10_units", "smacv2_20_units",
)
# name: (ally unit types, enemy unit types), in SMAX's unit-type indices
# (0 marine, 1 marauder, 2 stalker, 3 zealot, 4 zergling, 5 hydralisk).
REGISTERED_MAPS = {
    "8m_vs_9m": ((0,) * 8, (0,) * 9),
    "3s_vs_3z": ((2, 2, 2), (3, 3, 3)),
}
SMAX_MAPS = JAXMARL_MAPS + tuple(REGISTERED_MAPS)
# The ResQ paper's SMAC maps that SMAX has (MMM, MMM2, bane_vs_bane, 2s_vs_1sc, 1c3s5z, 2c_vs_64zg
# need medivacs, banelings, colossi or a spine crawler, which SMAX does not model).
SMAC_TO_SMAX = {name: f"smax_{name}" for name in ("3s_vs_5z", "27m_vs_30m", "5m_vs_6m", "8m_vs_9m", "3s_vs_3z")}


def smax_config_names() -> list[str]:
    """The `env=` names of every SMAX map (conf/env/smax_<map>.yaml)."""
    return [f"smax_{name}" for name in SMAX_MAPS]


def _import_jax():
    """jax and JaxMARL's SMAX, imported on first use.

    Unless the user set them: one XLA CPU thread (runs use one torch thread too) and the CPU platform
    (the suite is CPU-only; it also spares a log line about a missing TPU). Both take effect only if jax
    has not been initialised yet. JaxMARL prints two lines about "submoduled environments" at import.
    """
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    jax = require("jax", SMAX_INSTALL)
    smax = require("jaxmarl.environments.smax", SMAX_INSTALL)
    return jax, smax


def _scenario(name: str):
    jax, smax = _import_jax()
    if name not in SMAX_MAPS:
        raise ValueError(f"unknown SMAX map {name!r}; known maps: {', '.join(SMAX_MAPS)} "
                         f"(choose one with env=smax_<map>)")
    table = smax.smax_env.MAP_NAME_TO_SCENARIO
    if name not in table and name in REGISTERED_MAPS:
        allies, enemies = REGISTERED_MAPS[name]
        unit_types = jax.numpy.array(allies + enemies, dtype=jax.numpy.uint8)
        smax.register_scenario(name, smax.Scenario(unit_types, len(allies), len(enemies), False, False))
    return smax.map_name_to_scenario(name)


_COMPILED: dict[tuple[str, str], _Compiled] = {}


class _Compiled:
    """One SMAX game (map + settings) and its jitted batched reset and step."""

    def __init__(self, map_name: str, settings: dict[str, Any]) -> None:
        jax, smax = _import_jax()
        jnp = jax.numpy
        env = smax.HeuristicEnemySMAX(scenario=_scenario(map_name), **settings)
        self.env = env
        agents = list(env.agents)
        n_allies = env.num_allies

        def strong(tree):
            # reset and step must hand over identically typed states, or jit compiles the step twice
            return jax.tree.map(lambda x: x.astype(x.dtype), tree)

        def avail_of(states):
            avail = jax.vmap(env.get_avail_actions)(states)
            return jnp.stack([avail[a] for a in agents], axis=1).astype(bool)  # (B, N, A)

        def observe(obs):
            return jnp.stack([obs[a] for a in agents], axis=1), obs["world_state"]  # (B, N, O), (B, S)

        def reset(keys):
            obs, states = jax.vmap(env.reset)(keys)
            states = strong(states)
            no = jnp.zeros((keys.shape[0],), dtype=bool)
            # carry: game states, terminated, truncated, won, and the last (obs, state, avail)
            return strong((states, no, no, no, *observe(obs), avail_of(states)))

        def step(key, carry, actions, max_steps):
            states, terminated, truncated, won, last_obs, last_state, _ = carry
            key, sub = jax.random.split(key)
            keys = jax.random.split(sub, actions.shape[0])

            def one(k, state, acts):
                obs, new_state, rewards, _, _ = env.step_env(k, state, {a: acts[i] for i, a in enumerate(agents)})
                return obs, new_state, rewards[agents[0]]

            obs, new_states, reward = jax.vmap(one)(keys, states, actions)
            ended = terminated | truncated  # (B,) copies that had already finished: frozen

            def keep(old, new):
                return jnp.where(ended.reshape(ended.shape + (1,) * (new.ndim - 1)), old, new)

            states = jax.tree.map(keep, states, new_states)
            obs, state = observe(obs)
            alive = states.state.unit_alive  # (B, allies + enemies)
            allies_dead = ~alive[:, :n_allies].any(-1)
            enemies_dead = ~alive[:, n_allies:].any(-1)
            over = allies_dead | enemies_dead
            time_out = states.state.step >= max_steps
            carry = (states, jnp.where(ended, terminated, over), jnp.where(ended, truncated, time_out & ~over),
                     jnp.where(ended, won, enemies_dead & ~allies_dead), keep(last_obs, obs), keep(last_state, state),
                     avail_of(states))
            reward = jnp.where(ended, 0.0, reward).astype(jnp.float32)
            return key, strong(carry), reward

        self.reset = jax.jit(reset)
        self.step = jax.jit(step)


def _compiled(map_name: str, settings: dict[str, Any]) -> _Compiled:
    key = (map_name, repr(sorted(settings.items())))  # repr: settings may hold lists (unit stats)
    if key not in _COMPILED:
        _COMPILED[key] = _Compiled(map_name, settings)
    return _COMPILED[key]


def _torch(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x))


class SMAXEnv(BatchedEnv):
    """B vmapped copies of a SMAX map against JaxMARL's heuristic enemy.

    Args:
        map_name: a SMAX map (`SMAX_MAPS`), e.g. "3s_vs_5z".
        n_envs: B, copies stepped per call.
        seed: seeds the copies' JAX random keys.
        max_steps: time limit in env steps (SMAX's default 100; each step is 8 world steps of 1/16 s).
        reward_scale: multiplies SMAX's normalised reward (at most 2 per episode: 1 damage + 1 win).
        see_enemy_actions, walls_cause_death, attack_mode, enemy_shoots, won_battle_bonus, ...:
            HeuristicEnemySMAX / SMAX keyword arguments (defaults as JaxMARL's SMAX baselines use them).
    """

    def __init__(
        self,
        map_name: str,
        n_envs: int = 1,
        seed: int = 0,
        max_steps: int = 100,
        reward_scale: float = 1.0,
        see_enemy_actions: bool = True,
        walls_cause_death: bool = True,
        attack_mode: str = "closest",
        **smax_kwargs: Any,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if max_steps < 1:
            raise ValueError(f"env.max_steps must be >= 1, got {max_steps}")
        if not np.isfinite(reward_scale):
            raise ValueError(f"env.reward_scale must be finite, got {reward_scale}")
        jax, _ = _import_jax()
        self._jax = jax
        # The time limit is an argument of the compiled step, not part of the game (SMAX's own max_steps only
        # sets a `done` flag this adapter does not use), so envs that differ only in it share one compile.
        settings = dict(see_enemy_actions=bool(see_enemy_actions),
                        walls_cause_death=bool(walls_cause_death), attack_mode=str(attack_mode), **smax_kwargs)
        self._game = _compiled(map_name, settings)
        env = self._game.env
        self.map_name = map_name
        self.n_envs = n_envs
        self.reward_scale = float(reward_scale)
        self._max_steps = jax.numpy.int32(max_steps)
        self.spec = EnvSpec(
            n_agents=int(env.num_allies),
            n_actions=int(env.num_ally_actions),
            obs_dim=int(env.obs_size),
            state_dim=int(env.state_size),
            episode_limit=int(max_steps),
            reports_battle_won=True,
        )
        self._key = jax.random.PRNGKey(seed)
        self._carry = None

    def _timestep(self, reward) -> TimeStep:
        _, terminated, truncated, won, obs, state, avail = self._carry
        return TimeStep(obs=_torch(obs), state=_torch(state), avail=_torch(avail),
                        reward=_torch(reward) * self.reward_scale,
                        terminated=_torch(terminated), truncated=_torch(truncated), battle_won=_torch(won))

    def reset(self) -> TimeStep:
        self._key, sub = self._jax.random.split(self._key)
        self._carry = self._game.reset(self._jax.random.split(sub, self.n_envs))
        return self._timestep(np.zeros(self.n_envs, dtype=np.float32))

    def step(self, actions: torch.Tensor) -> TimeStep:
        if self._carry is None:
            raise RuntimeError("SMAXEnv.step before reset()")
        if tuple(actions.shape) != (self.n_envs, self.spec.n_agents):
            raise ValueError(f"actions must have shape {(self.n_envs, self.spec.n_agents)}, got {tuple(actions.shape)}")
        acts = self._jax.numpy.asarray(actions.numpy().astype(np.int32))
        self._key, self._carry, reward = self._game.step(self._key, self._carry, acts, self._max_steps)
        return self._timestep(reward)
