"""The DDPG agent, its full-data update and its buffer, on tiny problems."""
import math
import os

import numpy as np
import pytest
import torch

from agents import DDPG, Behaviour, DDPGConfig, TransitionBuffer, load_actor, polyak_update
from law.errors import ConfigError

A_STAR = np.array([0.5, -0.3, 0.2, 0.0, -0.6], np.float32)
LOW = np.array([-1.0, -2.0, 0.0, -0.5, -3.0], np.float32)
HIGH = np.array([1.0, 2.0, 4.0, 0.5, 3.0], np.float32)


def stage_obs(stages, loss=1.0, acc=0.5) -> np.ndarray:
    stages = np.asarray(stages, np.float32)
    return np.stack([stages, np.full_like(stages, loss), np.full_like(stages, acc)], axis=1)


def random_buffer(n=100, stages=2, seed=0) -> TransitionBuffer:
    rng = np.random.default_rng(seed)
    buffer = TransitionBuffer(action_dim=5)
    for i in range(n):
        obs = stage_obs([i % stages], rng.uniform(0, 2), rng.uniform(0, 1))[0]
        next_obs = stage_obs([(i + 1) % stages], rng.uniform(0, 2), rng.uniform(0, 1))[0]
        buffer.add(obs, rng.uniform(-1, 1, 5), rng.normal(), next_obs, i % stages == stages - 1)
    return buffer


def params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("embed_dim", 0),
        ("hidden", -1),
        ("actor_lr", 0.0),
        ("critic_lr", -1e-3),
        ("gamma", 1.5),
        ("tau", 0.0),
        ("noise_std", -0.1),
        ("noise_decay", 1.2),
        ("noise_correlation", 1.5),
        ("fdu_epochs", 0),
        ("fdu_batch_size", 0),
        ("grad_clip", -1.0),
        ("n_critics", 0),
        ("target_min_critics", 3),
        ("policy_delay", 0),
    ],
)
def test_validate_names_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        DDPGConfig(**{field: value}).validate()
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")


def test_defaults_validate_and_bad_bounds_are_config_errors():
    DDPGConfig().validate()
    with pytest.raises(ConfigError, match="action_high"):
        DDPG(2, [0.0, 1.0], [1.0, 1.0])


# ------------------------------------------------------------------ polyak


def test_polyak_update_hand_values():
    params = [torch.tensor([1.0, 2.0]), torch.tensor([[4.0]])]
    targets = [torch.tensor([0.0, 0.0]), torch.tensor([[0.0]])]
    polyak_update(params, targets, tau=0.25)
    assert torch.equal(targets[0], torch.tensor([0.25, 0.5]))
    assert torch.equal(targets[1], torch.tensor([[1.0]]))
    polyak_update(params, targets, tau=0.5)  # 0.5 * old + 0.5 * param
    assert torch.equal(targets[0], torch.tensor([0.625, 1.25]))
    polyak_update(params, targets, tau=1.0)
    assert torch.equal(targets[1], params[1])


# --------------------------------------------------------------- exploration


def test_explored_actions_have_the_configured_std_per_dimension():
    agent = DDPG(3, LOW, HIGH, DDPGConfig(noise_std=0.1))
    obs = stage_obs(np.zeros(4000))
    greedy = agent.act(obs, explore=False)
    explored = agent.act(obs, explore=True, rng=np.random.default_rng(0))
    assert explored.shape == (4000, 5) and explored.dtype == np.float32
    noise = explored - greedy
    expected_std = 0.1 * (HIGH - LOW) / 2
    np.testing.assert_allclose(noise.std(axis=0), expected_std, rtol=0.05)
    assert np.all(np.abs(noise.mean(axis=0)) < 4 * expected_std / math.sqrt(4000))
    off_diagonal = np.corrcoef(noise.T)[~np.eye(5, dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.1  # independent draw per dimension


def test_explored_actions_are_clipped_to_the_box():
    agent = DDPG(3, LOW, HIGH, DDPGConfig(noise_std=5.0))
    explored = agent.act(stage_obs(np.arange(600) % 3), explore=True, rng=np.random.default_rng(1))
    assert np.all(explored >= LOW) and np.all(explored <= HIGH)
    assert np.all((explored == LOW).any(axis=0)) and np.all((explored == HIGH).any(axis=0))


def episode_noise(correlation: float, episodes: int = 3000, stages: int = 6) -> np.ndarray:
    """What a training episode's behaviour adds to the greedy action, stage by stage, in
    std units: (episodes, stages, 5), each stage with its own generator as on a worker."""
    agent = DDPG(stages, -10.0, 10.0, DDPGConfig(noise_std=0.1, noise_correlation=correlation), action_dim=5)
    obs = stage_obs(np.arange(stages))
    greedy = agent.act(obs, explore=False)
    noise = np.empty((episodes, stages, 5))
    for episode in range(episodes):
        behaviour = Behaviour(agent.behaviour_state())  # one per episode, as a worker builds it
        for stage in range(stages):
            rng = np.random.default_rng([episode, stage])
            noise[episode, stage] = behaviour(obs[stage], rng) - greedy[stage]  # std 0.1 x half-range 10 = 1
    return noise


@pytest.mark.parametrize("correlation", [0.0, 0.7])
def test_correlated_noise_keeps_the_std_and_has_the_asked_lag_one_correlation(correlation):
    noise = episode_noise(correlation)
    np.testing.assert_allclose(noise.std(axis=0), 1.0, rtol=0.06)  # every stage, every dimension
    lag_one = [np.corrcoef(noise[:, t, d], noise[:, t + 1, d])[0, 1] for t in range(5) for d in range(5)]
    np.testing.assert_allclose(np.mean(lag_one), correlation, atol=0.03)
    lag_two = [np.corrcoef(noise[:, t, d], noise[:, t + 2, d])[0, 1] for t in range(4) for d in range(5)]
    np.testing.assert_allclose(np.mean(lag_two), correlation ** 2, atol=0.03)  # an AR(1), not a shared offset


def test_noise_of_correlation_one_is_one_offset_per_episode_and_a_new_one_next_episode():
    noise = episode_noise(1.0, episodes=50)
    np.testing.assert_allclose(noise, np.repeat(noise[:, :1], 6, axis=1), atol=1e-5)
    assert np.abs(np.corrcoef(noise[:-1, 0, 0], noise[1:, 0, 0])[0, 1]) < 0.4  # episodes independent


def test_noise_decays_per_episode_down_to_its_floor():
    agent = DDPG(2, -1.0, 1.0, DDPGConfig(noise_std=0.4, noise_decay=0.5, noise_min=0.06), action_dim=5)
    assert agent.noise_scale == pytest.approx(0.4)
    agent.end_episode()
    agent.end_episode()
    assert agent.noise_scale == pytest.approx(0.1)
    agent.end_episode()
    assert agent.noise_scale == pytest.approx(0.06)


def test_greedy_act_is_deterministic_in_the_box_and_single_or_batched():
    agent = DDPG(4, LOW, HIGH)
    obs = stage_obs([0, 1, 2, 3], loss=0.7, acc=0.2)
    batch = agent.act(obs, explore=False)
    assert np.array_equal(batch, agent.act(obs, explore=False))
    assert agent.act(obs[2], explore=False).shape == (5,)
    # Batch size may pick a different matmul kernel: equal up to float32 rounding.
    np.testing.assert_allclose(agent.act(obs[2], explore=False), batch[2], rtol=1e-6, atol=1e-7)
    assert np.all(batch >= LOW) and np.all(batch <= HIGH)
    with pytest.raises(ValueError, match="stage index"):
        agent.act(stage_obs([4]), explore=False)


# ---------------------------------------------------------------- learning


def run_bandit(num_stages: int, optimum_of_stage) -> DDPG:
    """One-step episodes (done every step) with reward ``-||a - a*(stage)||^2``."""
    cfg = DDPGConfig(actor_lr=3e-4, critic_lr=3e-3, fdu_epochs=4, fdu_batch_size=64, seed=0)
    agent = DDPG(num_stages, -1.0, 1.0, cfg, action_dim=5)
    buffer = TransitionBuffer(action_dim=5, capacity=512)
    rng = np.random.default_rng(0)
    obs = stage_obs(np.arange(32) % num_stages)
    optimum = np.stack([optimum_of_stage(int(s)) for s in obs[:, 0]])
    for _ in range(40):
        actions = agent.act(obs, explore=True, rng=rng)
        rewards = -((actions - optimum) ** 2).sum(axis=1)
        buffer.extend(zip(obs, actions, rewards, obs, np.ones(len(obs), bool)))
        agent.update(buffer)
        agent.end_episode()
    return agent


def test_learns_the_optimum_of_a_one_step_bandit():
    agent = run_bandit(1, lambda stage: A_STAR)
    greedy = agent.act(stage_obs([0])[0], explore=False)
    np.testing.assert_allclose(greedy, A_STAR, atol=0.15)


def test_learns_a_stage_dependent_optimum_through_the_embedding():
    agent = run_bandit(2, lambda stage: A_STAR if stage == 0 else -A_STAR)
    greedy = agent.act(stage_obs([0, 1]), explore=False)
    np.testing.assert_allclose(greedy[0], A_STAR, atol=0.15)
    np.testing.assert_allclose(greedy[1], -A_STAR, atol=0.15)


def test_critic_bootstraps_through_non_terminal_stages():
    # Two-stage chain, actions irrelevant: r=0 then r=1 at the end, so
    # Q(stage 0) = gamma * 1 and Q(stage 1) = 1.
    rng = np.random.default_rng(0)
    buffer = TransitionBuffer(action_dim=2)
    s0, s1 = stage_obs([0, 1])
    for _ in range(32):
        buffer.add(s0, rng.uniform(-1, 1, 2), 0.0, s1, False)
        buffer.add(s1, rng.uniform(-1, 1, 2), 1.0, s1, True)
    cfg = DDPGConfig(gamma=0.9, tau=0.1, critic_lr=3e-3, fdu_epochs=10)
    agent = DDPG(2, -1.0, 1.0, cfg, action_dim=2)
    for _ in range(6):
        agent.update(buffer)
    with torch.no_grad():
        q = agent.critics[0](torch.from_numpy(np.stack([s0, s1])), torch.zeros(2, 2))
    np.testing.assert_allclose(q.numpy(), [0.9, 1.0], atol=0.08)


def test_full_data_update_replays_every_transition_each_epoch():
    buffer = random_buffer(n=100)
    agent = DDPG(2, -1.0, 1.0, DDPGConfig(fdu_epochs=3, fdu_batch_size=32), action_dim=5)
    stats = agent.update(buffer)
    assert stats["samples_seen"] == 100 * 3
    assert stats["minibatches"] == 3 * math.ceil(100 / 32)
    assert stats["actor_steps"] == stats["minibatches"]
    assert all(math.isfinite(stats[k]) for k in ("critic_loss", "actor_loss", "q"))


def test_td3_switches_delay_the_actor_and_stay_deterministic():
    cfg = DDPGConfig(n_critics=2, policy_delay=2, target_noise=0.2, fdu_epochs=2, fdu_batch_size=25)
    buffer = random_buffer(n=100)
    first, second = (DDPG(2, -1.0, 1.0, cfg, action_dim=5) for _ in range(2))
    stats = first.update(buffer)
    assert stats["minibatches"] == 8 and stats["actor_steps"] == 4
    assert second.update(buffer) == stats
    assert params_equal(first.critic_targets, second.critic_targets)


def drift_from_the_data(pessimism: float) -> float:
    """A one-step bandit whose reward rises linearly along every action dimension, explored only
    near a start the actor was cloned on: how far (mean |a - start|, unit box) the greedy actor
    moves in 30 updates. A critic extrapolates the slope out of the data; only an ensemble
    knows where it has no data."""
    cfg = DDPGConfig(n_critics=5, target_min_critics=2, pessimism=pessimism, fdu_epochs=4, seed=3)
    agent = DDPG(1, -1.0, 1.0, cfg, action_dim=5)
    rng = np.random.default_rng(0)
    obs = stage_obs(np.zeros(256))
    start = np.full((256, 5), -0.5, np.float32)
    agent.start_from(obs, start)
    actions = np.clip(start + rng.normal(0, 0.05, start.shape), -1, 1).astype(np.float32)
    buffer = TransitionBuffer(action_dim=5)
    buffer.extend(zip(obs, actions, actions.sum(axis=1), obs, np.ones(len(obs), bool)))
    for _ in range(30):
        agent.update(buffer)
    return float(np.abs(agent.act(obs[:1], explore=False) - start[:1]).mean())


def test_a_pessimistic_actor_stays_where_the_ensemble_has_data():
    plain, pessimistic = drift_from_the_data(0.0), drift_from_the_data(5.0)
    assert plain > 0.3, "the plain actor follows the critic's extrapolated slope out of the data"
    assert pessimistic < plain / 2
    with pytest.raises(ConfigError, match="pessimism"):
        DDPGConfig(pessimism=1.0).validate()  # one critic: no disagreement to measure


def test_the_actor_keeps_its_start_until_actor_start_episodes_have_finished():
    import copy
    agent = DDPG(2, -1.0, 1.0, DDPGConfig(fdu_epochs=2, fdu_batch_size=25, actor_start=2), action_dim=5)
    start, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critics)
    buffer = random_buffer(n=100)
    for episode in range(2):
        stats = agent.update(buffer)
        assert stats["actor_steps"] == 0 and params_equal(agent.actor, start) and params_equal(agent.actor_target, start)
        assert not params_equal(agent.critics, critic), "the critic learns meanwhile"
        agent.end_episode()
    assert agent.update(buffer)["actor_steps"] == 8 and not params_equal(agent.actor, start)
    with pytest.raises(ConfigError, match="actor_start"):
        DDPGConfig(actor_start=-1).validate()


def test_two_seeded_runs_are_identical_and_another_seed_differs():
    buffer = random_buffer()
    runs = [DDPG(2, -1.0, 1.0, DDPGConfig(seed=seed), action_dim=5) for seed in (7, 7, 8)]
    global_state = torch.get_rng_state()
    stats = [agent.update(buffer) for agent in runs]
    assert torch.equal(torch.get_rng_state(), global_state)  # the agent keeps its own RNG
    assert stats[0] == stats[1] and stats[0] != stats[2]
    assert params_equal(runs[0].actor, runs[1].actor)
    assert params_equal(runs[0].critic_targets, runs[1].critic_targets)
    assert not params_equal(runs[0].actor, runs[2].actor)
    obs = stage_obs([0, 1])
    explored = [agent.act(obs, True, np.random.default_rng(3)) for agent in runs[:2]]
    np.testing.assert_array_equal(*explored)


# ------------------------------------------------------------- persistence


def test_agent_checkpoint_round_trip_resumes_exactly(tmp_path):
    buffer = random_buffer()
    agent = DDPG(2, LOW, HIGH, DDPGConfig(hidden=32, seed=3))
    agent.update(buffer)
    for _ in range(5):
        agent.end_episode()
    path = tmp_path / "agent.pt"
    agent.save(path)
    assert sorted(os.listdir(tmp_path)) == ["agent.pt"]  # no temp file left behind
    torch.load(path, weights_only=True)

    resumed = DDPG.load(path)
    assert resumed.cfg == agent.cfg and resumed.episodes_done == 5
    assert resumed.noise_scale == agent.noise_scale
    obs = stage_obs([0, 1], loss=0.3, acc=0.9)
    np.testing.assert_array_equal(resumed.act(obs, False), agent.act(obs, False))
    assert resumed.update(buffer) == agent.update(buffer)  # optimiser + shuffle state restored
    assert params_equal(resumed.actor, agent.actor)
    assert params_equal(resumed.critic_targets, agent.critic_targets)

    mismatched = DDPG(2, LOW, HIGH, DDPGConfig(hidden=16))
    with pytest.raises(ConfigError, match="hidden"):
        mismatched.load_state_dict(agent.state_dict())


def test_policy_file_rebuilds_the_greedy_actor(tmp_path):
    agent = DDPG(3, LOW, HIGH, DDPGConfig(embed_dim=8))
    agent.update(random_buffer(stages=3))
    path = tmp_path / "policy.pt"
    torch.save(agent.actor_state(), path)
    actor = load_actor(torch.load(path, weights_only=True))
    obs = stage_obs([0, 1, 2], loss=1.2, acc=0.4)
    with torch.no_grad():
        rebuilt = actor(torch.from_numpy(obs)).numpy()
    np.testing.assert_array_equal(rebuilt, agent.act(obs, explore=False))
    assert "critics" not in agent.actor_state()


def test_the_greedy_policy_is_a_snapshot_that_later_updates_leave_alone():
    agent = DDPG(3, LOW, HIGH, DDPGConfig(embed_dim=8))
    snapshot = agent.greedy_state()
    before = {k: v.clone() for k, v in snapshot["actor"]["weights"].items()}
    agent.update(random_buffer(stages=3))
    assert all(torch.equal(before[k], v) for k, v in snapshot["actor"]["weights"].items())
    assert not all(torch.equal(before[k], v) for k, v in agent.actor_state()["weights"].items())


def test_buffer_save_load_round_trip_is_atomic_and_weights_only(tmp_path):
    buffer = random_buffer(n=300)
    path = tmp_path / "sub" / "buffer.pt"
    buffer.save(path)
    buffer.save(path)  # overwriting goes through a rename too
    assert os.listdir(path.parent) == ["buffer.pt"]
    raw = torch.load(path, weights_only=True)
    assert raw["reward"].shape == (300,)
    loaded = TransitionBuffer.load(path)
    assert len(loaded) == 300
    for original, restored in zip(buffer.arrays(), loaded.arrays()):
        np.testing.assert_array_equal(original, restored)
    loaded.add(*[np.zeros(3), np.zeros(5), 1.0, np.zeros(3), True])
    assert len(loaded) == 301


def test_buffer_capacity_drops_the_oldest_and_survives_a_round_trip():
    buffer = TransitionBuffer(action_dim=1, capacity=4)
    for i in range(7):
        buffer.add(stage_obs([0])[0], [0.0], float(i), stage_obs([0])[0], False)
    assert len(buffer) == 4
    np.testing.assert_array_equal(buffer.arrays().reward, [3, 4, 5, 6])  # oldest first
    restored = TransitionBuffer(action_dim=1)
    restored.load_state_dict(buffer.state_dict())
    restored.add(stage_obs([0])[0], [0.0], 7.0, stage_obs([0])[0], True)
    np.testing.assert_array_equal(restored.arrays().reward, [4, 5, 6, 7])
    tensors = restored.tensors()
    assert tensors.done.dtype == torch.float32 and tensors.done.tolist() == [0, 0, 0, 1]


def test_buffer_rejects_malformed_transitions():
    buffer = TransitionBuffer(action_dim=5)
    with pytest.raises(ValueError, match="action"):
        buffer.add(np.zeros(3), np.zeros(4), 0.0, np.zeros(3), False)
    with pytest.raises(ValueError, match="reward"):
        buffer.add(np.zeros(3), np.zeros(5), float("nan"), np.zeros(3), False)
    assert len(buffer) == 0
    with pytest.raises(ValueError, match="at least one"):
        DDPG(2, -1.0, 1.0, action_dim=5).update(buffer)
