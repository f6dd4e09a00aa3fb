"""The stag-hunt predator-prey: its rules on hand-made states, and the batched step against a slow
per-copy reference written from the rules (SPEC.md "Environments") that consumes the same draws."""

import pytest
import torch

from envs import PredatorPrey
from envs.predator_prey import ACTIONS, StepNoise

RIGHT, DOWN, LEFT, UP, STAY, CATCH = range(6)
DELTA = {RIGHT: (0, 1), DOWN: (1, 0), LEFT: (0, -1), UP: (-1, 0)}


def noise(env, predator_order=None, prey_order=None, prey_move=None):
    """Step draws for all copies; by default predators and prey go in index order and prey pick their
    first free neighbour (u = 0)."""
    b, n, p = env.n_envs, env.n_predators, env.n_prey
    return StepNoise(
        predator_order=torch.as_tensor(predator_order if predator_order is not None else range(n)).expand(b, n),
        prey_order=torch.as_tensor(prey_order if prey_order is not None else range(p)).expand(b, p),
        prey_move=torch.as_tensor(prey_move if prey_move is not None else [0.0] * p, dtype=torch.float).expand(b, p),
    )


def act(*actions):
    return torch.tensor([actions])


def small(n_predators, n_prey, **kwargs):
    return PredatorPrey(n_envs=1, grid_size=kwargs.pop("grid_size", 6), n_predators=n_predators, n_prey=n_prey, **kwargs)


def obs_cell(obs, radius, dr, dc):
    """The 3 features an observation (75,) shows at offset (dr, dc) from the predator."""
    view = 2 * radius + 1
    return obs.view(view, view, 3)[dr + radius, dc + radius].tolist()


# ---- spec and layout ---------------------------------------------------------------------------
def test_spec_is_the_papers():
    env = PredatorPrey(n_envs=2)
    spec = env.spec
    assert (spec.n_agents, spec.n_actions, spec.obs_dim, spec.state_dim, spec.episode_limit) == (8, 6, 75, 300, 200)
    step = env.reset()
    assert step.obs.shape == (2, 8, 75) and step.state.shape == (2, 300) and step.avail.shape == (2, 8, 6)
    assert ACTIONS == ("right", "down", "left", "up", "stay", "catch")
    cells = torch.cat([env.predators, env.prey], 1)  # (B, 16, 2)
    for copy in cells.tolist():
        assert len({tuple(c) for c in copy}) == 16  # distinct cells
    assert step.state.view(2, 10, 10, 3).sum((1, 2)).tolist() == [[8, 8, 0], [8, 8, 0]]


def test_observation_is_the_window_around_the_predator_with_zeros_off_the_grid():
    env = small(2, 1)
    step = env.place(predators=[[0, 0], [1, 2]], prey=[[2, 0]])
    obs = step.obs[0, 0]
    assert obs_cell(obs, 2, 0, 0) == [1, 0, 0]  # itself
    assert obs_cell(obs, 2, 1, 2) == [1, 0, 0]  # the other predator
    assert obs_cell(obs, 2, 2, 0) == [0, 1, 0]  # the prey
    assert obs.view(5, 5, 3)[:2].sum() == 0 and obs.view(5, 5, 3)[:, :2].sum() == 0  # off the grid
    assert obs.sum() == 3
    state = step.state.view(6, 6, 3)
    assert state[0, 0].tolist() == [1, 0, 0] and state[1, 2].tolist() == [1, 0, 0] and state[2, 0].tolist() == [0, 1, 0]


# ---- availability ------------------------------------------------------------------------------
def test_walls_make_moves_off_the_grid_unavailable():
    env = small(2, 1)
    avail = env.place(predators=[[0, 0], [5, 5]], prey=[[3, 3]]).avail[0]
    assert avail[0].tolist() == [True, True, False, False, True, False]  # not left, not up, no prey near
    assert avail[1].tolist() == [False, False, True, True, True, False]
    with pytest.raises(ValueError, match="unavailable"):
        env.step(act(LEFT, STAY))


def test_catch_is_available_only_next_to_a_live_prey():
    env = small(3, 1)
    avail = env.place(predators=[[2, 3], [1, 1], [4, 4]], prey=[[2, 2]]).avail[0]
    assert avail[:, CATCH].tolist() == [True, False, False]  # (1, 1) is diagonal, (4, 4) far
    avail = env.place(predators=[[2, 3], [1, 1], [4, 4]], prey=[[2, 2]], alive=[False]).avail[0]
    assert not avail[:, CATCH].any()
    with pytest.raises(ValueError, match="'catch'.*unavailable"):
        env.step(act(CATCH, STAY, STAY))


# ---- capture, punishment, freezing ---------------------------------------------------------------
def test_two_adjacent_catchers_capture_the_prey_and_both_are_frozen_and_removed():
    env = small(3, 2)
    env.place(predators=[[2, 1], [1, 2], [5, 5]], prey=[[2, 2], [0, 5]])
    step = env.step(act(CATCH, CATCH, STAY), noise(env))
    assert step.reward.tolist() == [10.0]
    assert env.alive[0].tolist() == [False, True] and env.active[0].tolist() == [False, False, True]
    state = step.state.view(6, 6, 3)
    assert state[2, 2, 1] == 0 and state[2, 1, 0] == 0 and state[1, 2, 0] == 0  # removed from the grid
    assert state[..., 0].sum() == 1 and state[..., 1].sum() == 1
    assert step.obs[0, 0].abs().sum() == 0 and step.obs[0, 1].abs().sum() == 0  # frozen ones see nothing
    assert step.avail[0, 0].tolist() == [False, False, False, False, True, False]  # frozen: stay only
    with pytest.raises(ValueError, match="predator 0 .*'right'.*unavailable"):
        env.step(act(RIGHT, STAY, STAY))
    # the free predator neither sees the frozen ones nor is blocked by them
    env.place(predators=[[2, 1], [1, 2], [2, 0]], prey=[[2, 2], [0, 5]])
    env.step(act(CATCH, CATCH, STAY), noise(env))
    env.step(act(STAY, STAY, RIGHT), noise(env))
    assert env.predators[0, 2].tolist() == [2, 1]  # moved onto the frozen predator's cell


def test_a_lone_catcher_is_punished_once_per_prey_and_the_prey_is_not_captured():
    env = small(2, 2, punishment=-4.0)
    env.place(predators=[[2, 2], [5, 5]], prey=[[2, 3], [3, 2]])  # predator 0 is next to both prey
    step = env.step(act(CATCH, STAY), noise(env))
    assert step.reward.tolist() == [-8.0]  # p for each prey it tried alone
    assert env.alive[0].all() and env.active[0].all()
    env = small(2, 1, punishment=0.0)
    env.place(predators=[[2, 2], [5, 5]], prey=[[2, 3]])
    assert env.step(act(CATCH, STAY), noise(env)).reward.tolist() == [0.0]  # p = 0
    env = small(2, 1)  # default p = -2; a predator next to the prey that does not catch does not count
    env.place(predators=[[2, 2], [2, 4]], prey=[[2, 3]])
    assert env.step(act(CATCH, STAY), noise(env)).reward.tolist() == [-2.0]


def test_three_catchers_capture_once_and_all_three_freeze():
    env = small(4, 2)
    env.place(predators=[[2, 1], [1, 2], [3, 2], [5, 5]], prey=[[2, 2], [0, 5]])
    step = env.step(act(CATCH, CATCH, CATCH, STAY), noise(env))
    assert step.reward.tolist() == [10.0] and env.active[0].tolist() == [False, False, False, True]


def test_a_catcher_frozen_by_one_prey_no_longer_counts_for_the_next():
    # predator 0 is next to both prey; predator 1 only to prey 0; predator 2 only to prey 1.
    env = small(3, 2)
    start = {"predators": [[2, 2], [1, 1], [3, 3]], "prey": [[1, 2], [2, 3]]}
    env.place(**start)
    step = env.step(act(CATCH, CATCH, CATCH), noise(env, prey_order=[0, 1]))
    assert step.reward.tolist() == [10.0 - 2.0]  # prey 0 caught by 0 and 1; then 2 alone at prey 1
    assert env.alive[0].tolist() == [False, True] and env.active[0].tolist() == [False, False, True]
    env.place(**start)
    step = env.step(act(CATCH, CATCH, CATCH), noise(env, prey_order=[1, 0]))
    assert step.reward.tolist() == [10.0 - 2.0]  # prey 1 caught by 0 and 2; then 1 alone at prey 0
    assert env.alive[0].tolist() == [True, False] and env.active[0].tolist() == [False, True, False]


# ---- movement ------------------------------------------------------------------------------------
def test_predators_move_one_at_a_time_in_the_drawn_order():
    env = small(2, 1)
    start = {"predators": [[2, 1], [2, 3]], "prey": [[5, 5]]}
    env.place(**start)
    env.step(act(RIGHT, LEFT), noise(env, predator_order=[0, 1]))  # both aim at (2, 2)
    assert env.predators[0].tolist() == [[2, 2], [2, 3]]
    env.place(**start)
    env.step(act(RIGHT, LEFT), noise(env, predator_order=[1, 0]))
    assert env.predators[0].tolist() == [[2, 1], [2, 2]]
    # a predator can follow into a cell vacated earlier in the same step, not one vacated later
    start = {"predators": [[2, 1], [2, 2]], "prey": [[5, 5]]}
    env.place(**start)
    env.step(act(RIGHT, RIGHT), noise(env, predator_order=[1, 0]))
    assert env.predators[0].tolist() == [[2, 2], [2, 3]]
    env.place(**start)
    env.step(act(RIGHT, RIGHT), noise(env, predator_order=[0, 1]))
    assert env.predators[0].tolist() == [[2, 1], [2, 3]]


def test_predators_are_blocked_by_prey():
    env = small(1, 1)
    env.place(predators=[[2, 1]], prey=[[2, 2]])
    env.step(act(RIGHT), noise(env, prey_move=[0.0]))
    assert env.predators[0, 0].tolist() == [2, 1]
    assert env.prey[0, 0].tolist() == [2, 3]  # the prey's first free neighbour: right


def test_prey_step_to_a_random_free_neighbour_in_the_order_right_down_left_up():
    env = small(1, 1)
    start = {"predators": [[2, 3]], "prey": [[2, 2]]}  # right is taken: free are down, left, up
    for u, expected in ((0.0, [3, 2]), (0.34, [2, 1]), (0.99, [1, 2])):
        env.place(**start)
        env.step(act(STAY), noise(env, prey_move=[u]))
        assert env.prey[0, 0].tolist() == expected, u
    env.place(predators=[[0, 1]], prey=[[0, 0]])  # corner: walls and a predator leave only down
    env.step(act(STAY), noise(env, prey_move=[0.99]))
    assert env.prey[0, 0].tolist() == [1, 0]


def test_a_boxed_in_prey_stays():
    env = small(3, 2)
    env.place(predators=[[0, 1], [1, 1], [2, 0]], prey=[[0, 0], [1, 0]])  # prey 0 blocked by prey 1, and back
    env.step(act(STAY, STAY, STAY), noise(env, prey_order=[0, 1]))
    assert env.prey[0].tolist() == [[0, 0], [1, 0]]


def test_prey_move_in_turn_and_can_take_a_cell_freed_by_a_capture():
    # prey 1 at (2, 3) has predators above and below and prey 0 on its left: only right (2, 4) is free.
    # Prey 0 is captured first, which frees (2, 2): prey 1 then picks among right and left.
    env = small(4, 2)
    env.place(predators=[[2, 1], [1, 2], [1, 3], [3, 3]], prey=[[2, 2], [2, 3]])
    env.step(act(CATCH, CATCH, STAY, STAY), noise(env, prey_order=[0, 1], prey_move=[0.0, 0.99]))
    assert env.prey[0, 1].tolist() == [2, 2]


# ---- episode ends --------------------------------------------------------------------------------
def test_catching_every_prey_terminates_and_the_finished_copy_ignores_actions():
    env = small(2, 1)
    env.place(predators=[[2, 1], [2, 3]], prey=[[2, 2]])
    step = env.step(act(CATCH, CATCH), noise(env))
    assert step.terminated.tolist() == [True] and step.truncated.tolist() == [False]
    again = env.step(act(STAY, STAY), noise(env))
    assert again.reward.tolist() == [0.0] and not again.terminated.any() and not again.truncated.any()
    assert torch.equal(again.obs, step.obs) and torch.equal(again.state, step.state)


def test_freezing_every_predator_terminates():
    env = small(2, 2)
    env.place(predators=[[2, 1], [2, 3]], prey=[[2, 2], [5, 5]])
    step = env.step(act(CATCH, CATCH), noise(env))
    assert env.alive[0].tolist() == [False, True]
    assert step.terminated.tolist() == [True]  # nothing can happen any more


def test_the_time_limit_truncates_and_is_not_terminal():
    env = small(1, 1, episode_limit=3)
    env.place(predators=[[0, 0]], prey=[[5, 5]])
    flags = [(s.terminated.item(), s.truncated.item()) for s in (env.step(act(STAY)) for _ in range(3))]
    assert flags == [(False, False), (False, False), (False, True)]
    assert PredatorPrey().spec.episode_limit == 200


def test_copies_run_independently():
    env = PredatorPrey(n_envs=2, grid_size=6, n_predators=2, n_prey=1)
    env.place(predators=torch.tensor([[[2, 1], [2, 3]], [[0, 0], [5, 5]]]), prey=torch.tensor([[[2, 2]], [[3, 3]]]))
    step = env.step(torch.tensor([[CATCH, CATCH], [STAY, STAY]]), noise(env))
    assert step.reward.tolist() == [10.0, 0.0] and step.terminated.tolist() == [True, False]


# ---- configuration errors ------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"punishment": 2.0}, "punishment.*<= 0"),
    ({"punishment": float("nan")}, "punishment must be a finite number"),
    ({"grid_size": 3}, "do not fit"),
    ({"n_predators": 0}, "n_predators must be an int >= 1"),
    ({"episode_limit": 2.5}, "episode_limit must be an int"),
])
def test_bad_settings_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PredatorPrey(**kwargs)


def test_step_checks_the_action_tensor():
    env = PredatorPrey(n_envs=2)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(torch.zeros(2, 8, dtype=torch.long))
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(2, 8\)"):
        env.step(torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="integer indices in 0..5"):
        env.step(torch.full((2, 8), 6))


# ---- the batched step equals a per-copy reference ------------------------------------------------
class Reference:
    """One copy of the stag hunt, written from SPEC.md's rules with Python lists, one entity at a time."""

    def __init__(self, env: PredatorPrey, b: int) -> None:
        self.size, self.radius = env.board.shape[0], env.view_radius
        self.p, self.reward10, self.needed, self.limit = env.punishment, env.capture_reward, env.catchers_needed, env.spec.episode_limit
        self.predators = [tuple(x) for x in env.predators[b].tolist()]
        self.prey = [tuple(x) for x in env.prey[b].tolist()]
        self.active = env.active[b].tolist()
        self.alive = env.alive[b].tolist()
        self.t, self.done = 0, False

    def on_grid(self, cell):
        return 0 <= cell[0] < self.size and 0 <= cell[1] < self.size

    def taken(self, cell):
        return any(a and p == cell for p, a in zip(self.predators, self.active)) or any(
            a and p == cell for p, a in zip(self.prey, self.alive))

    @staticmethod
    def next_to(a, b):
        return abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1

    def avail(self):
        rows = []
        for pos, active in zip(self.predators, self.active):
            if not active:
                rows.append([False] * 4 + [True, False])
                continue
            moves = [self.on_grid((pos[0] + dr, pos[1] + dc)) for dr, dc in DELTA.values()]
            catch = any(alive and self.next_to(pos, q) for q, alive in zip(self.prey, self.alive))
            rows.append(moves + [True, catch])
        return rows

    def features(self, cell):
        if not self.on_grid(cell):
            return [0.0, 0.0, 0.0]
        predator = any(a and p == cell for p, a in zip(self.predators, self.active))
        prey = any(a and p == cell for p, a in zip(self.prey, self.alive))
        return [float(predator), float(prey), 0.0]

    def obs(self):
        out = []
        r = self.radius
        for pos, active in zip(self.predators, self.active):
            cells = [self.features((pos[0] + dr, pos[1] + dc)) for dr in range(-r, r + 1) for dc in range(-r, r + 1)]
            out.append([v if active else 0.0 for cell in cells for v in cell])
        return out

    def state(self):
        return [v for row in range(self.size) for col in range(self.size) for v in self.features((row, col))]

    def step(self, actions, predator_order, prey_order, prey_move):
        if self.done:
            return 0.0, False, False
        for i in predator_order:
            if self.active[i] and actions[i] in DELTA:
                dr, dc = DELTA[actions[i]]
                target = (self.predators[i][0] + dr, self.predators[i][1] + dc)
                if self.on_grid(target) and not self.taken(target):
                    self.predators[i] = target
        reward = 0.0
        for j in prey_order:
            if not self.alive[j]:
                continue
            catchers = [i for i in range(len(self.predators)) if self.active[i] and actions[i] == CATCH
                        and self.next_to(self.predators[i], self.prey[j])]
            if len(catchers) >= self.needed:
                reward += self.reward10
                self.alive[j] = False
                for i in catchers:
                    self.active[i] = False
                continue
            if catchers:
                reward += self.p
            here = self.prey[j]
            free = [(here[0] + dr, here[1] + dc) for dr, dc in DELTA.values()]
            free = [c for c in free if self.on_grid(c) and not self.taken(c)]
            if free:
                self.prey[j] = free[int((prey_move[j] * len(free)).item())]
        self.t += 1
        terminated = not any(self.alive) or not any(self.active)
        truncated = not terminated and self.t >= self.limit
        self.done = terminated or truncated
        return reward, terminated, truncated


def random_actions(avail, generator, catch_bias):
    """Uniform available actions, but catch with probability `catch_bias` where it is available."""
    b, n, a = avail.shape
    actions = torch.multinomial(avail.reshape(b * n, a).float(), 1, generator=generator).view(b, n)
    catch = avail[..., CATCH] & (torch.rand(b, n, generator=generator) < catch_bias)
    return torch.where(catch, CATCH, actions)


def check_against_reference(env, seed, episodes, catch_bias):
    generator = torch.Generator().manual_seed(seed)
    checked = {"captures": 0, "punished": 0, "terminated": 0, "truncated": 0}
    for _ in range(episodes):
        step = env.reset()
        refs = [Reference(env, b) for b in range(env.n_envs)]
        for t in range(env.spec.episode_limit):
            for b, ref in enumerate(refs):
                assert step.avail[b].tolist() == ref.avail(), (seed, t, b)
                assert step.obs[b].tolist() == ref.obs(), (seed, t, b)
                assert step.state[b].tolist() == ref.state(), (seed, t, b)
            actions = random_actions(step.avail, generator, catch_bias)
            draws = env.sample_noise()
            step = env.step(actions, draws)
            for b, ref in enumerate(refs):
                expected = ref.step(actions[b].tolist(), draws.predator_order[b].tolist(), draws.prey_order[b].tolist(),
                                    draws.prey_move[b])
                assert step.reward[b].item() == pytest.approx(expected[0]), (seed, t, b)
                assert (step.terminated[b].item(), step.truncated[b].item()) == expected[1:], (seed, t, b)
                checked["captures"] += expected[0] > 0
                checked["punished"] += expected[0] % env.capture_reward != 0  # some p < 0 in the sum
                checked["terminated"] += expected[1]
                checked["truncated"] += expected[2]
            if step.done.all():
                break
        for b, ref in enumerate(refs):
            assert step.obs[b].tolist() == ref.obs() and step.state[b].tolist() == ref.state()
    return checked


@pytest.mark.parametrize("seed", range(12))
def test_batched_step_equals_the_reference_on_a_crowded_small_grid(seed):
    env = PredatorPrey(n_envs=4, seed=seed, grid_size=5, n_predators=5, n_prey=4, episode_limit=25,
                       punishment=-2.0 if seed % 2 else -4.0)
    checked = check_against_reference(env, seed, episodes=2, catch_bias=0.6)
    assert checked["captures"] and checked["punished"]


@pytest.mark.parametrize("seed", range(3))
def test_batched_step_equals_the_reference_in_the_papers_setting(seed):
    env = PredatorPrey(n_envs=3, seed=100 + seed, episode_limit=60)
    checked = check_against_reference(env, seed, episodes=1, catch_bias=0.7)
    assert checked["punished"]


def test_the_reference_comparison_sees_every_kind_of_event():
    """Across seeds the comparison must cover captures, punishments and both episode ends."""
    totals = {"captures": 0, "punished": 0, "terminated": 0, "truncated": 0}
    for seed in range(4):
        env = PredatorPrey(n_envs=4, seed=seed, grid_size=5, n_predators=4, n_prey=2, episode_limit=15)
        for key, value in check_against_reference(env, seed, episodes=2, catch_bias=0.8).items():
            totals[key] += value
    assert all(totals.values()), totals


# ---- through the collector and the whole stack ---------------------------------------------------
class _NoPolicy:
    """The collector explores fully at epsilon = 1 and only asks for an initial recurrent state."""

    def initial_state(self, batch_size):
        return None


def test_the_time_limit_is_stored_as_non_terminal_and_a_capture_as_terminal():
    from resq.data.collector import EpisodeCollector

    generator = torch.Generator().manual_seed(0)
    never = PredatorPrey(n_envs=4, grid_size=5, n_predators=1, n_prey=1, episode_limit=7)  # 1 catcher < 2
    episodes = EpisodeCollector(never, generator).collect(_NoPolicy(), epsilon=1.0)
    assert episodes.lengths.tolist() == [7] * 4 and episodes.terminated.sum() == 0  # truncated: bootstrapped
    alone = PredatorPrey(n_envs=16, grid_size=3, n_predators=1, n_prey=1, episode_limit=50, catchers_needed=1)
    episodes = EpisodeCollector(alone, generator).collect(_NoPolicy(), epsilon=1.0)
    lengths = episodes.lengths
    assert (lengths < 50).any()
    last = episodes.terminated[torch.arange(16), lengths - 1, 0]
    assert torch.equal(last, (lengths < 50).float()) and episodes.terminated.sum() == (lengths < 50).sum()
    captured = lengths < 50
    assert (episodes.reward[torch.arange(16), lengths - 1, 0][captured] == 10.0).all()  # the capture's +10


def run_cli(args, cwd):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "resq.run", *args], cwd=cwd, env=env, capture_output=True, check=False,
                          text=True, timeout=600)


def read_rows(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_resq_trains_on_a_small_predator_prey_through_the_cli(tmp_path):
    """Episodes of many steps ending by capture or time limit go through collector, buffer, TD(lambda)
    targets and every ResQ loss; the run writes its metrics and no matrix table."""
    out = run_cli(["env=predator_prey", "algorithm=resq", "env.grid_size=5", "env.n_predators=3", "env.n_prey=2",
                   "env.episode_limit=20", "t_max=400", "test_interval=200", "test_episodes=2", "data.batch_size=4",
                   "data.buffer_size=16", "exploration.epsilon_anneal_steps=200", "trainer.enable_progress_bar=false",
                   "trainer.log_every_n_steps=1", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    rows = read_rows(run / "metrics.csv")
    assert [int(r["t_env"]) for r in rows][:2] == [0, 200] and int(rows[-1]["t_env"]) >= 400
    assert all(1 < float(r["test/ep_length_mean"]) <= 20 for r in rows)
    assert rows[-1]["env"] == "predator_prey" and not (run / "matrix_game.json").exists()
    logged = [r for path in run.glob("lightning_logs/*/metrics.csv") for r in read_rows(path)]
    losses = [float(r["train/loss_td"]) for r in logged if r.get("train/loss_td")]
    jt = [float(r["train/loss_jt"]) for r in logged if r.get("train/loss_jt")]
    assert len(losses) >= 10 and len(jt) == len(losses)
    assert all(torch.isfinite(torch.tensor(losses + jt)))


TINY = ["seed=0", "t_max=40", "test_interval=40", "test_episodes=1", "data.batch_size=2", "data.buffer_size=4",
        "hydra.launcher.n_jobs=1"]


@pytest.mark.parametrize(("experiment", "narrow"), [
    ("resq_fig4", ["env.punishment=-2", "env.episode_limit=10"]),
    ("qtran_fig3", ["env=mgs", "exploration.epsilon_finish=1.0"]),
    ("qtran_fig4", ["env=qtran_pp_n4", "env.penalty=1.5", "env.episode_limit=10"]),
])
def test_each_new_experiment_runs_a_tiny_version_of_itself(tmp_path, experiment, narrow):
    """Every algorithm of the experiment's pinned sweep trains on it (one seed, one value of the
    other axes, 40 env steps)."""
    from tests.conftest import compose_config

    out = run_cli(["-m", f"experiment={experiment}", *TINY, *narrow, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert not list((tmp_path / "sweep").glob("*/error.txt")), [p.read_text()[:500] for p in (tmp_path / "sweep").glob("*/error.txt")]
    rows = [read_rows(p)[-1] for p in (tmp_path / "sweep").glob("*/metrics.csv")]
    pinned = compose_config([f"experiment={experiment}"], return_hydra_config=True).hydra.sweeper.params
    assert {r["algorithm"] for r in rows} == set(pinned.algorithm.split(","))
    assert all(int(r["t_env"]) >= 40 for r in rows)


@pytest.mark.parametrize(("algorithm", "anneal"), [
    ("resq", 1_000_000), ("qplex", 1_000_000), ("cw_qmix", 1_000_000), ("ow_qmix", 1_000_000),
    ("qmix", 50_000), ("vdn", 50_000), ("qtran_base", 50_000),
])
def test_predator_prey_protocol_anneals_epsilon_per_algorithm_as_the_paper_says(algorithm, anneal):
    from tests.conftest import compose_config

    for overrides in ([f"algorithm={algorithm}", "env=predator_prey"], ["experiment=resq_fig4", f"algorithm={algorithm}"]):
        cfg = compose_config(overrides)
        assert cfg.exploration.epsilon_anneal_steps == anneal, overrides
        assert (cfg.t_max, cfg.test_interval, cfg.test_episodes, cfg.data.n_envs) == (1_000_000, 10_000, 16, 1)
    cfg = compose_config([f"algorithm={algorithm}", "env=predator_prey", "exploration.epsilon_anneal_steps=7"])
    assert cfg.exploration.epsilon_anneal_steps == 7  # the command line still wins
    assert compose_config([f"algorithm={algorithm}"]).exploration.epsilon_finish == 1.0  # other envs untouched


EXPECTED_VALUE_ALGORITHMS = ["resq", "qmix", "qmix_pymarl2", "vdn", "qatten", "qplex", "qtran_base", "qtran_alt",
                             "cw_qmix", "ow_qmix", "iql"]


@pytest.mark.parametrize("algorithm", EXPECTED_VALUE_ALGORITHMS)
def test_every_head_values_each_step_of_a_long_episode_on_its_own(algorithm):
    """Multi-step episodes (the matrix games have one step): every head of every expected-value method
    gives the same values on the whole (B, T) batch as on one step at a time, so no mixer or joint
    network mixes time steps or episodes; and every loss is finite."""
    from resq.data.collector import EpisodeCollector
    from resq.run import build_datamodule, build_learner
    from tests.conftest import compose_config

    cfg = compose_config([f"algorithm={algorithm}", "env=predator_prey", "env.grid_size=5", "env.n_predators=3",
                          "env.n_prey=2", "env.episode_limit=6", "data.n_envs=5"])
    datamodule = build_datamodule(cfg)
    learner = build_learner(cfg, datamodule.spec)
    batch = EpisodeCollector(datamodule.train_env, torch.Generator().manual_seed(1)).collect(learner, 0.5)
    assert batch.max_steps > 1
    state, avail = batch.current(batch.state), batch.current(batch.avail)
    with torch.no_grad():
        for head, net in learner.nets.items():
            if not hasattr(net, "utilities"):  # a state-only network (QTRAN's V_jt(s))
                whole, steps = net(state), torch.cat([net(state[:, t : t + 1]) for t in range(batch.max_steps)], 1)
                assert torch.allclose(whole, steps, atol=1e-5), head
                continue
            q = batch.current(learner.utilities(learner.nets, head, batch))  # (B, T, N, A)
            whole = net(q, batch.actions, state, avail)
            steps = torch.cat([net(q[:, t : t + 1], batch.actions[:, t : t + 1], state[:, t : t + 1],
                                   avail[:, t : t + 1]) for t in range(batch.max_steps)], dim=1)
            assert torch.allclose(whole, steps, atol=1e-5), head
    terms = learner.losses(batch)
    assert all(torch.isfinite(v) for v in terms.values())


def test_the_seed_fixes_placements_and_every_draw():
    def trajectory(seed):
        env = PredatorPrey(n_envs=3, seed=seed)
        steps = [env.reset()]
        for _ in range(20):
            steps.append(env.step(torch.where(steps[-1].avail[..., STAY], STAY, 0)))
        return torch.stack([s.state for s in steps])
    assert torch.equal(trajectory(5), trajectory(5)) and not torch.equal(trajectory(5), trajectory(6))
