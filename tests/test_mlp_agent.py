"""The feed-forward agent (agent=mlp): contract, no memory across rows, and every learner takes it."""

import json

import pytest
import torch

from resq.data import EpisodeCollector
from resq.nn import MLPAgent, RNNAgent
from resq.run import build_datamodule, build_learner, train
from tests.conftest import compose_run


def test_shapes_and_sizes_follow_the_rnn_agents_contract():
    agent = MLPAgent(n_agents=3, n_actions=4, obs_dim=5)
    obs, prev = torch.randn(2, 7, 3, 5), torch.zeros(2, 7, 3, 4)
    q, hidden = agent(obs, prev, agent.initial_state(2))
    assert q.shape == (2, 7, 3, 4) and hidden.shape == (2, 3, 0)
    # 64-64 hidden layers on obs + last action + agent id, as EPyMARL's mlp agent
    assert [tuple(p.shape) for p in agent.parameters()] == [(64, 12), (64,), (64, 64), (64,), (4, 64), (4,)]
    rnn = RNNAgent(n_agents=3, n_actions=4, obs_dim=5)
    assert torch.equal(agent.inputs(obs, prev), rnn.inputs(obs, prev))


def test_a_utility_depends_on_its_own_row_only():
    torch.manual_seed(0)
    agent = MLPAgent(n_agents=2, n_actions=3, obs_dim=4)
    obs, prev = torch.randn(1, 5, 2, 4), torch.zeros(1, 5, 2, 3)
    q = agent(obs, prev)[0]
    changed = obs.clone()
    changed[:, 1] += 10.0  # a different observation at row 1
    q_changed = agent(changed, prev)[0]
    assert not torch.allclose(q[:, 1], q_changed[:, 1])
    assert torch.equal(q[:, [0, 2, 3, 4]], q_changed[:, [0, 2, 3, 4]])
    # acting row by row gives what the batch pass gives
    hidden = agent.initial_state(1)
    rows = []
    for t in range(5):
        q_t, hidden = agent(obs[:, t : t + 1], prev[:, t : t + 1], hidden)
        rows.append(q_t)
    assert torch.allclose(torch.cat(rows, 1), q)


@pytest.mark.parametrize("algorithm", ["vdn", "qmix", "resq", "qtran_base", "cw_qmix", "iql"])
def test_every_expected_value_learner_trains_and_acts_with_it(algorithm):
    cfg, choices = compose_run(["agent=mlp", f"algorithm={algorithm}", "env=matrix_resq"])
    datamodule = build_datamodule(cfg)
    learner = build_learner(cfg, datamodule.spec, choices)
    agents = [net.agent for net in learner.nets.values() if hasattr(net, "agent")]
    assert agents and all(type(agent) is MLPAgent for agent in agents)
    collector = EpisodeCollector(datamodule.train_env, datamodule.generator)
    for _ in range(4):
        datamodule.buffer.insert(collector.collect(learner, 0.5))
    batch = datamodule.buffer.sample(datamodule.batch_size, datamodule.generator)
    loss = learner.total_loss(learner.losses(batch))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in learner.nets["main"].agent.parameters())


def test_resq_with_the_mlp_agent_learns_the_matrix_game(tmp_path):
    cfg, choices = compose_run(["agent=mlp", "algorithm=resq", "env=matrix_resq", "t_max=20000",
                                "test_interval=10000", "logger=none", "trainer.enable_progress_bar=false"])
    train(cfg, tmp_path, choices)
    table = json.loads((tmp_path / "matrix_game.json").read_text())
    assert table["greedy_joint_action"] == [0, 0]
    assert table["max_abs_error"] < 0.5, table["q_joint"]
