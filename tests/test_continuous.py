"""Continuous actions through the env contract, the buffer and the collector; MTQ; the action-kind check;
the actor-critic base's acting, updates, evaluation and result hooks (on a toy subclass)."""

import functools
import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from envs import BatchedEnv, EnvSpec, MatrixGame, MaxOfTwoQuadratics, TimeStep, max_of_two_quadratics
from resq.data import EpisodeBatch, EpisodeBuffer, EpisodeCollector, RolloutDataModule
from resq.data.exploration import box_exploration
from resq.learners import ActorCritic, IncompatibleComponentsError, NonFiniteLossError
from resq.learners.action_kinds import check_action_kind
from resq.learners.value_factorization import masked_mean
from resq.nn.actors import CategoricalActor, DeterministicActor
from resq.run import build_datamodule, build_learner
from tests.conftest import compose_config

QTRAN = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


# ---- the env contract --------------------------------------------------------------------------
def test_continuous_spec_validates_its_box():
    spec = EnvSpec.continuous(n_agents=2, action_dim=3, action_low=-1, action_high=2, obs_dim=4, state_dim=5,
                              episode_limit=7)
    assert spec.action_kind == "continuous" and not spec.discrete and spec.n_actions == 0
    assert spec.action_low == (-1.0,) * 3 and spec.action_high == (2.0,) * 3
    assert (spec.avail_dim, spec.action_shape, spec.action_input_dim) == (1, (3,), 3)
    with pytest.raises(ValueError, match="action_low < action_high"):
        EnvSpec.continuous(2, 1, 1.0, 1.0, 1, 1, 1)
    with pytest.raises(ValueError, match="action_dim=2 entries"):
        EnvSpec.continuous(2, 2, (0.0,), (1.0,), 1, 1, 1)
    with pytest.raises(ValueError, match="n_actions 0"):
        EnvSpec(2, 3, 1, 1, 1, action_kind="continuous", action_dim=1, action_low=(0.0,), action_high=(1.0,))
    with pytest.raises(ValueError, match="action_kind must be one of"):
        EnvSpec(2, 3, 1, 1, 1, action_kind="box")
    with pytest.raises(ValueError, match="no finite number of joint actions"):
        _ = spec.n_joint_actions
    discrete = EnvSpec(2, 3, 1, 1, 1)
    assert (discrete.avail_dim, discrete.action_shape, discrete.action_input_dim) == (3, (), 3)


def test_mtq_reward_at_the_two_optima_and_elsewhere_by_hand():
    u = torch.tensor([[5.0, 5.0], [-5.0, -5.0], [0.0, 0.0], [5.0, -5.0], [4.0, 6.0], [-8.0, -2.0]])
    # f1 = 0.8 (-((u1+5)/3)^2 - ((u2+5)/3)^2), f2 = -(u1-5)^2 - (u2-5)^2 + 10, r = max(f1, f2)
    f1 = [0.8 * -(100 / 9) * 2, 0.0, 0.8 * -(25 / 9) * 2, 0.8 * -(100 / 9), 0.8 * -(81 / 9 + 121 / 9),
          0.8 * -(9 / 9 + 9 / 9)]
    f2 = [10.0, -190.0, -40.0, -90.0, 8.0, -(169 + 49) + 10.0]
    expected = torch.tensor([max(a, b) for a, b in zip(f1, f2)])
    assert torch.allclose(max_of_two_quadratics(u), expected, atol=1e-5)
    assert max_of_two_quadratics(u)[0] == 10.0 and max_of_two_quadratics(u)[1] == 0.0
    # the two optima are the local maxima of the surface
    grid = torch.stack(torch.meshgrid(torch.linspace(-10, 10, 201), torch.linspace(-10, 10, 201), indexing="ij"), -1)
    r = max_of_two_quadratics(grid)
    assert r.max() == 10.0 and grid.reshape(-1, 2)[r.argmax()].tolist() == [5.0, 5.0]


def test_mtq_env_steps_once_scales_by_a_tenth_and_clips_to_the_box():
    env = MaxOfTwoQuadratics(n_envs=3)
    first = env.reset()
    assert first.obs.shape == (3, 2, 1) and first.avail.shape == (3, 2, 1) and first.avail.all()
    out = env.step(torch.tensor([[[5.0], [5.0]], [[-5.0], [-5.0]], [[30.0], [5.0]]]))
    assert torch.allclose(out.reward, torch.tensor([1.0, 0.0, 0.1 * float(max_of_two_quadratics(torch.tensor([10.0, 5.0])))]))
    assert out.terminated.all() and not out.truncated.any()
    assert (env.step(torch.zeros(3, 2, 1)).reward == 0).all()  # ended: nothing until reset
    with pytest.raises(ValueError, match="float with shape"):
        env.step(torch.zeros(3, 2, dtype=torch.long))
    assert env.result([[5.0], [5.0]])["reward"] == 10.0


class ContinuousCountingEnv(BatchedEnv):
    """Env b runs `lengths[b]` steps; obs = t; reward = t + 1 + sum of the actions; actions in [-2, 2]^2."""

    def __init__(self, lengths, n_agents=2, limit=5):
        self.lengths, self.n_envs = torch.tensor(lengths), len(lengths)
        self.spec = EnvSpec.continuous(n_agents, 2, -2.0, 2.0, obs_dim=1, state_dim=1, episode_limit=limit)
        self.t = torch.zeros(self.n_envs, dtype=torch.long)

    def _step(self, reward, done):
        b, n = self.n_envs, self.spec.n_agents
        return TimeStep(obs=self.t.float()[:, None, None].expand(b, n, 1).clone(), state=self.t.float()[:, None],
                        avail=torch.ones(b, n, 1, dtype=torch.bool), reward=reward, terminated=done,
                        truncated=torch.zeros(b, dtype=torch.bool))

    def reset(self):
        self.t.zero_()
        return self._step(torch.zeros(self.n_envs), torch.zeros(self.n_envs, dtype=torch.bool))

    def step(self, actions):
        assert actions.shape == (self.n_envs, self.spec.n_agents, 2) and actions.is_floating_point()
        live = self.t < self.lengths
        reward = torch.where(live, self.t.float() + 1 + actions.sum((1, 2)), torch.zeros(self.n_envs))
        self.t = torch.where(live, self.t + 1, self.t)
        return self._step(reward, self.t >= self.lengths)


class RampPolicy:
    """Continuous: agent i at observation row t plays (0.1 t + i, -0.1 t); records the last-action inputs."""

    def __init__(self):
        self.t, self.seen = 0, []

    def initial_state(self, batch_size):
        self.t = 0

    def act(self, obs, prev_actions, avail, hidden, epsilon, generator):
        self.seen.append(prev_actions.clone())
        b, n = obs.shape[:2]
        a = torch.stack([0.1 * self.t + torch.arange(n, dtype=torch.float32), torch.full((n,), -0.1 * self.t)], -1)
        self.t += 1
        return a.expand(b, n, 2).clone(), hidden


def test_continuous_collector_and_buffer_round_trip():
    env = ContinuousCountingEnv([2, 4, 1])
    policy = RampPolicy()
    batch = EpisodeCollector(env).collect(policy, epsilon=1.0)  # continuous: the policy still acts at epsilon 1
    assert batch.actions.shape == (3, 4, 2, 2) and batch.actions.dtype == torch.float32 and batch.continuous
    assert batch.avail.shape == (3, 5, 2, 1) and batch.current(batch.avail)[batch.filled[..., 0] > 0].all()
    assert batch.lengths.tolist() == [2, 4, 1]
    assert torch.equal(batch.actions[1, 3], torch.tensor([[0.3, -0.3], [1.3, -0.3]]))
    assert batch.reward[1, :, 0].tolist() == pytest.approx([1 + 1.0, 2 + 1.0, 3 + 1.0, 4 + 1.0])
    assert (batch.actions[0, 2:] == 0).all() and (batch.filled[0, 2:] == 0).all()  # padding
    # the last-action input at row t is the action of step t-1 (zeros at row 0), at acting and in the batch
    assert torch.equal(policy.seen[0], torch.zeros(3, 2, 2))
    assert torch.equal(policy.seen[2], batch.actions[:, 1])
    assert torch.equal(batch.prev_actions[:, 1:], batch.actions) and (batch.prev_actions[:, 0] == 0).all()
    with pytest.raises(TypeError, match="continuous actions have no one-hot"):
        _ = batch.prev_actions_onehot
    buffer = EpisodeBuffer(env.spec, capacity=4)
    buffer.insert(batch)
    buffer.insert(EpisodeCollector(ContinuousCountingEnv([1, 1])).collect(RampPolicy(), 0.0))
    assert len(buffer) == 4 and buffer._storage.actions.dtype == torch.float32
    sample = buffer.sample(4, torch.Generator().manual_seed(0))
    assert sample.actions.shape[-1] == 2 and sample.max_steps == 4
    assert torch.equal(sample.current(sample.prev_actions)[..., 1:, :, :], sample.actions[:, :-1])
    restored = EpisodeBuffer(env.spec, capacity=4)
    restored.load_state_dict(buffer.state_dict())
    assert torch.equal(restored._storage.actions, buffer._storage.actions)


def test_box_exploration_stays_in_the_box():
    g = torch.Generator().manual_seed(0)
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 4.0])
    a = box_exploration(torch.zeros(500, 3, 2), low, high, epsilon=0.5, noise_std=2.0, generator=g)
    assert (a >= low).all() and (a <= high).all() and a.std() > 0.3
    assert torch.equal(box_exploration(torch.full((2, 3, 2), 0.5), low, high), torch.full((2, 3, 2), 0.5))


# ---- the action-kind check --------------------------------------------------------------------
def test_a_discrete_method_on_mtq_is_refused_before_training_naming_both_and_the_options():
    cfg = compose_config(["algorithm=qmix", "env=mtq"])
    datamodule = build_datamodule(cfg)
    with pytest.raises(IncompatibleComponentsError) as info:
        build_learner(cfg, datamodule.spec, {"algorithm": "qmix", "env": "mtq"})
    message = str(info.value)
    assert "algorithm=qmix" in message and "env=mtq" in message and "continuous actions" in message
    assert "discrete actions only" in message


def test_a_continuous_only_method_on_a_discrete_env_is_refused():
    class ContinuousOnly:
        action_kinds = ("continuous",)

    with pytest.raises(IncompatibleComponentsError, match=r"ContinuousOnly .*continuous actions only.*env=matrix_qtran.*"
                                                          r"discrete actions \(3 per agent\).*algorithm=qmix"):
        check_action_kind(ContinuousOnly, MatrixGame(QTRAN).spec, None, "matrix_qtran", ["qmix"])
    check_action_kind(ContinuousOnly, MaxOfTwoQuadratics().spec)  # the right kind passes


# ---- the actor-critic base, on a toy method -----------------------------------------------------
class ToyCentral(ActorCritic):
    """A central critic MLP on [state, joint action], regressed on the one-step reward; the actor
    maximises it (deterministic) or its expectation under a Gumbel-softmax sample (discrete)."""

    loss_names = ("loss_q", "loss_pi")

    def __init__(self, spec, **kwargs):
        if spec.discrete:
            actor = CategoricalActor(spec.n_agents, spec.n_actions, spec.obs_dim)
        else:
            actor = DeterministicActor(spec.n_agents, spec.action_dim, spec.obs_dim, spec.action_low, spec.action_high)
        critic = nn.Sequential(nn.Linear(spec.state_dim + spec.n_agents * spec.action_input_dim, 64), nn.ReLU(),
                               nn.Linear(64, 1))
        adam = functools.partial(torch.optim.Adam, lr=3e-3)
        super().__init__(spec, actor, critic, actor_optimizer=adam, critic_optimizer=adam, **kwargs)

    def q(self, state, action_inputs):
        return self.critic(torch.cat([state, action_inputs.flatten(-2)], -1))  # (*, 1)

    def critic_losses(self, batch):
        q = self.q(batch.current(batch.state), self.action_inputs(batch.actions))
        return {"loss_q": masked_mean((q - batch.reward) ** 2, batch.mask)}

    def actor_losses(self, batch):
        params = batch.current(self.policy_params(self.nets, batch))
        if self.spec.discrete:
            params = self.actor.relaxed_sample(params, batch.current(batch.avail))
        return {"loss_pi": -masked_mean(self.q(batch.current(batch.state), params), batch.mask)}

    def joint_q(self, batch, rows, joint_actions):
        b, t = rows.unbind(-1)
        state = batch.state[b, t][:, None].expand(-1, joint_actions.shape[1], -1)
        return self.q(state, self.action_inputs(joint_actions))[..., 0]


def fit(learner, env, t_max=2000, **data):
    data = {"epsilon_start": 0.0, "epsilon_finish": 0.0, **data}
    dm = RolloutDataModule(env, n_envs=8, batch_size=32, updates_per_rollout=4, t_max=t_max, test_interval=t_max // 2,
                           test_episodes=8, **data)
    trainer = pl.Trainer(max_epochs=dm.max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, inference_mode=False, log_every_n_steps=10)
    trainer.validate(learner, datamodule=dm, verbose=False)
    trainer.fit(learner, datamodule=dm)
    return trainer, dm


def test_the_base_acts_greedily_only_in_evaluation_rollouts():
    spec = MaxOfTwoQuadratics().spec
    learner = ToyCentral(spec, exploration_noise=0.2)
    obs, prev, avail = torch.ones(64, 2, 1), torch.zeros(64, 2, 1), torch.ones(64, 2, 1, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    collector = EpisodeCollector(MaxOfTwoQuadratics(n_envs=64), g)
    train_actions = collector.collect(learner, epsilon=0.0).actions[:, 0]
    test_actions = collector.collect(learner, epsilon=0.0, training=False).actions[:, 0]
    assert learner.training  # restored after the evaluation rollout
    deterministic = learner.actor(obs[:, None], prev[:, None])[0][:, 0]
    assert torch.allclose(test_actions, deterministic)
    assert deterministic.abs().max() < 0.5  # the policies start at the box's middle, (0, 0)
    assert 1.0 < (train_actions - deterministic).std() < 3.0  # noise 0.2 x half the box (10)
    learner.eval()
    assert torch.equal(learner.act(obs, prev, avail, None, 1.0, g)[0], deterministic)


def test_the_base_trains_on_mtq_and_writes_the_joint_action(tmp_path):
    torch.manual_seed(0)
    learner = ToyCentral(MaxOfTwoQuadratics().spec, tau=0.05)
    trainer, dm = fit(learner, MaxOfTwoQuadratics, t_max=800)
    metrics = trainer.callback_metrics
    assert {"test/joint_action_0", "test/joint_action_1", "test/return_mean", "test/igm_violation"} <= set(metrics)
    joint = learner.snapshot["joint_action"]
    assert [metrics["test/joint_action_0"].item(), metrics["test/joint_action_1"].item()] == [joint[0][0], joint[1][0]]
    files = learner.result_files(dm.train_env, {"algorithm": "toy", "seed": 0})
    record = files["mtq.json"]
    assert record["joint_action"] == [joint[0][0], joint[1][0]] and record["t_env"] == 800
    assert record["reward"] == pytest.approx(float(max_of_two_quadratics(torch.tensor(record["joint_action"]))))
    assert metrics["test/return_mean"].item() == pytest.approx(0.1 * record["reward"], abs=1e-4)
    assert record["algorithm"] == "toy"
    # soft targets moved towards the live critic but are not a copy of it
    live, target = learner.critic[0].weight, learner.target_nets["critic"][0].weight
    assert not torch.equal(live, target) and learner.n_updates > 0


def test_the_base_on_a_matrix_game_gives_the_table_and_the_policies():
    torch.manual_seed(0)
    learner = ToyCentral(MatrixGame(QTRAN).spec, tau=0.05)
    _, dm = fit(learner, functools.partial(MatrixGame, QTRAN), t_max=1200, epsilon_start=1.0, epsilon_finish=1.0)
    snap = learner.snapshot
    q = torch.tensor(snap["q_joint"])
    assert q.shape == (3, 3) and (q - torch.tensor(QTRAN, dtype=torch.float32)).abs().max() < 3.0
    policy = torch.tensor(snap["policy"])
    assert policy.shape == (2, 3) and torch.allclose(policy.sum(-1), torch.ones(2))
    assert snap["greedy_joint_action"] == policy.argmax(-1).tolist() and snap["q_agents"] == snap["policy"]
    assert learner.result_files(dm.train_env, {}) == {}  # a matrix game has no file of its own


def test_a_nan_loss_stops_before_the_update():
    learner = ToyCentral(MaxOfTwoQuadratics().spec)
    batch = EpisodeCollector(MaxOfTwoQuadratics(n_envs=4)).collect(learner, 0.0)
    batch.reward[0] = math.nan
    batch.info = {"t_env": 123}
    before = [p.clone() for p in learner.critic.parameters()]

    class Stub:
        log_every_n_steps = 1

    learner.optimizers = lambda: [torch.optim.SGD(learner.critic.parameters(), 0.1),
                                  torch.optim.SGD(learner.actor.parameters(), 0.1)]
    learner._optimizer_names = ["critic", "actor"]
    with pytest.raises(NonFiniteLossError, match="critic loss_q loss became nan at env step 123"):
        learner.training_step(batch, 0)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.critic.parameters()))


def test_parameters_shared_by_two_updates_are_refused():
    learner = ToyCentral(MaxOfTwoQuadratics().spec)
    learner.parameter_groups = lambda: {"critic": learner.critic.parameters(), "actor": learner.parameters()}
    with pytest.raises(IncompatibleComponentsError, match="both the critic and the actor optimiser"):
        learner.configure_optimizers()


def test_an_actor_of_the_wrong_kind_is_refused():
    with pytest.raises(IncompatibleComponentsError, match="build a continuous actor"):
        ActorCritic(MaxOfTwoQuadratics().spec, CategoricalActor(2, 3, 1), nn.Linear(1, 1),
                    torch.optim.Adam, torch.optim.Adam)


def test_episode_batch_for_a_continuous_spec():
    spec = MaxOfTwoQuadratics().spec
    batch = EpisodeBatch.empty(spec, 3)
    assert batch.actions.shape == (3, 1, 2, 1) and batch.avail.shape == (3, 2, 2, 1)
