"""The prior family a search starts from, and the agent's start from a prior (behaviour cloning)."""
import numpy as np
import torch

from agents import DDPG, DDPGConfig, TransitionBuffer
from envs import EnvConfig
from law.policy import policy_weights
from law.search.priors import IMBALANCED, prior_family

BALANCED = torch.tensor([200, 190, 210, 205])
LONG_TAIL = torch.tensor([400, 120, 40, 12])


def schedule(family, name):
    return np.asarray(family[name]["actions"], np.float32)


def test_the_family_is_neutral_and_the_sharp_loss_rule_on_balanced_data():
    env_cfg = EnvConfig.tiny()
    family = prior_family(env_cfg, BALANCED, batch_size=16)
    assert list(family) == ["neutral", "sharp loss rule"]
    assert not schedule(family, "neutral").any()
    sharp = schedule(family, "sharp loss rule")
    assert not sharp[:env_cfg.warmup_stages].any(), "the warm-up is not acted on"
    theta = env_cfg.theta(sharp[-1])
    assert theta[0] == -env_cfg.action_scale and theta[-1] == env_cfg.bias_range[0]
    assert list(prior_family(EnvConfig.tiny(features=("entropy",)), BALANCED, 16)) == ["neutral"]


def test_on_imbalanced_data_the_class_balanced_fit_joins_and_up_weights_the_tail():
    assert LONG_TAIL.max() / LONG_TAIL.min() >= IMBALANCED > BALANCED.max() / BALANCED.min()
    env_cfg = EnvConfig.tiny(features=("loss", "label"), bias_range=(-2.0, 2.0))
    family = prior_family(env_cfg, LONG_TAIL, batch_size=16)
    assert list(family) == ["neutral", "sharp loss rule", "class-balanced fit"]
    theta = torch.from_numpy(env_cfg.theta(schedule(family, "class-balanced fit")[-1]))
    # The label feature is the z-scored log frequency: rare classes get the larger weights.
    log_frequency = (LONG_TAIL.float() / LONG_TAIL.sum()).log()
    features = torch.zeros(4, 4)
    features[:, 3] = (log_frequency - log_frequency.mean()) / log_frequency.std()
    weights = policy_weights(features, theta[:-1], theta[-1])
    assert torch.equal(weights.argsort(), torch.arange(4)), "weights grow from head to tail"


def prior_episodes(num_stages=6, warmup=1, seeds=3):
    """Observations of a prior's evaluation episodes and its (constant, corner) action."""
    rng = np.random.default_rng(0)
    obs = np.array([[stage, 2.0 - 0.2 * stage, 0.2 + 0.05 * stage] for _ in range(seeds)
                    for stage in range(warmup, num_stages)], np.float32)
    obs[:, 1:] += rng.normal(0, 0.02, (len(obs), 2))
    actions = np.zeros((len(obs), 3), np.float32)
    actions[:, 0], actions[:, -1] = -1.0, -1.0
    actions[obs[:, 0] >= 4, 1] = 0.6  # and a stage-dependent part
    return obs, actions


def test_an_agent_started_from_a_prior_acts_as_the_prior_inside_the_box():
    agent = DDPG(6, -1.0, 1.0, DDPGConfig(seed=1), action_dim=3)
    obs, actions = prior_episodes()
    error = agent.start_from(obs, actions)
    assert error < 1e-3
    greedy = agent.act(obs, explore=False)
    np.testing.assert_allclose(greedy, np.clip(actions, -0.95, 0.95), atol=0.03)
    for online, target in zip(agent.actor.state_dict().values(), agent.actor_target.state_dict().values()):
        assert torch.equal(online, target), "the target actor starts where the actor does"
    assert torch.allclose(agent.anchor[5], torch.tensor([-0.95, 0.6, -0.95]))
    assert not agent.anchor[0].any(), "stages the prior never acted on stay anchored at the centre"


def test_the_action_penalty_pulls_towards_the_prior_not_the_centre():
    obs, actions = prior_episodes()
    cfg = DDPGConfig(seed=1, action_penalty=5.0, fdu_epochs=20, fdu_batch_size=8)
    buffer = TransitionBuffer(3)
    for o, a in zip(obs, actions):  # a flat reward: only the penalty has a say
        buffer.add(o, a, 0.0, o, True)
    distance = {}
    for anchor in ("prior", "centre"):
        agent = DDPG(6, -1.0, 1.0, cfg, action_dim=3)
        agent.start_from(obs, actions)
        if anchor == "centre":
            agent.anchor.zero_()
        agent.update(buffer)
        distance[anchor] = np.abs(agent.act(obs, explore=False) - np.clip(actions, -0.95, 0.95)).mean()
    assert distance["prior"] < 0.05 and distance["centre"] > 3 * distance["prior"]


def test_a_started_agent_round_trips_through_its_checkpoint():
    agent = DDPG(6, -1.0, 1.0, DDPGConfig(seed=1), action_dim=3)
    agent.start_from(*prior_episodes())
    restored = DDPG.from_state_dict(agent.state_dict())
    assert torch.equal(restored.anchor, agent.anchor)
    obs, _ = prior_episodes()
    np.testing.assert_array_equal(restored.act(obs, explore=False), agent.act(obs, explore=False))


def test_a_checkpoint_without_an_anchor_loads_with_the_centre():
    state = DDPG(6, -1.0, 1.0, DDPGConfig(seed=1), action_dim=3).state_dict()
    del state["anchor"]
    assert not DDPG.from_state_dict(state).anchor.any()
