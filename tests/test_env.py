"""The 3SM stage environment: gymnasium contract, exact zero reward of a no-op
policy, and a reward whose sign follows what the policy does to noisy labels."""
import time
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import ENV_ID, EnvConfig, StageWeightingEnv
from law.data import DataConfig
from law.errors import ConfigError, LawError
from law.trainer import OptimConfig

TINY_DATA = DataConfig(synthetic_train_size=300, synthetic_test_size=50, val_size=60, batch_size=32,
                       eval_batch_size=100, noise="symmetric", noise_rate=0.4)

INFO_KEYS = {"stage", "epoch", "lr", "theta", "reward_weight", "acc_target", "acc_reference",
             "loss_target", "loss_reference", "loss_gap", "mean_weight", "mean_weight_per_class",
             "mean_weight_noisy", "mean_weight_clean", "effective_sample_fraction"}



def tiny_env(**env_overrides) -> StageWeightingEnv:
    return StageWeightingEnv(EnvConfig.tiny(**env_overrides), TINY_DATA, OptimConfig(), "cpu")


def test_check_env_passes_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gymnasium.make(ENV_ID, env_cfg=EnvConfig.tiny(), data_cfg=TINY_DATA,
                             optim_cfg=OptimConfig(), device="cpu")
        check_env(env.unwrapped)
        # The wrappers gymnasium.make adds (passive checker, order enforcing) stay quiet too.
        env.reset(seed=1)
        env.step(env.action_space.sample())
        env.close()


def test_zero_action_keeps_the_pair_identical_for_a_whole_episode():
    env = tiny_env(model="small_cnn", num_stages=5, warmup_stages=1, steps_per_stage=4, lr_drop_stages=(3,))
    env.reset(seed=11)
    done = False
    while not done:
        _, reward, done, _, info = env.step(np.zeros(5, dtype=np.float32))
        assert reward == 0.0
        assert info["acc_target"] == info["acc_reference"] and info["loss_gap"] == 0.0
        assert info["mean_weight"] == 1.0
    assert env.trainer.identical()


def test_full_tiny_episode_runs_in_seconds_and_keeps_the_contract():
    env = tiny_env()
    started = time.perf_counter()
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space and obs[0] == 1.0  # first searchable stage
    rng = np.random.default_rng(0)
    stages = []
    done = False
    while not done:
        action = rng.uniform(-1, 1, 5).astype(np.float32)
        obs, reward, done, truncated, info = env.step(action)
        assert obs in env.observation_space and not truncated and np.isfinite(reward)
        assert INFO_KEYS <= info.keys()
        assert info["theta"] == pytest.approx((4.0 * action[:4]).tolist() + [2.0 * (action[4] + 1)])
        assert len(info["mean_weight_per_class"]) == 10
        stages.append(info)
    assert time.perf_counter() - started < 10.0
    assert obs[0] == 4.0 and [s["stage"] for s in stages] == [1, 2, 3]
    assert [s["lr"] for s in stages] == pytest.approx([0.05, 0.05, 0.005])
    assert stages[-1]["epoch"] == pytest.approx(4 * 3 / env.steps_per_epoch)
    # Later stages weigh more: r_w = s * exp(k * epoch / total_epochs).
    assert stages[-1]["reward_weight"] == pytest.approx(100.0 * np.e)
    with pytest.raises(LawError, match="episode is over"):
        env.step(np.zeros(5, dtype=np.float32))


def test_same_seed_same_episode_other_seed_other_episode():
    env = tiny_env()
    action = np.array([-0.5, 0.2, 0.1, 0.0, -0.1], dtype=np.float32)

    def episode(seed):
        first, _ = env.reset(seed=seed)
        return [first] + [env.step(action)[:2] for _ in range(3)]

    a, b, c = episode(5), episode(5), episode(6)
    assert np.array_equal(a[0], b[0]) and all(np.array_equal(x[0], y[0]) and x[1] == y[1]
                                               for x, y in zip(a[1:], b[1:]))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a[1:], c[1:]))


def test_actions_are_clipped_to_the_box_and_bad_ones_refused():
    env = tiny_env(action_scale=2.0)
    with pytest.raises(LawError, match="reset"):
        env.step(np.zeros(5, dtype=np.float32))
    env.reset(seed=0)
    info = env.step(np.array([-3.0, 0.5, 0.0, 0.0, 1.5], dtype=np.float32))[4]
    assert info["theta"] == [-2.0, 1.0, 0.0, 0.0, 4.0]  # b spans bias_range (0, 4)
    info = env.step(np.array([0.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32))[4]
    assert info["theta"] == [0.0, 0.0, 0.0, 0.0, 2.0] and info["mean_weight"] == 1.0
    with pytest.raises(LawError, match="5 finite numbers"):
        env.step(np.zeros(4, dtype=np.float32))
    with pytest.raises(LawError, match="5 finite numbers"):
        env.step(np.array([0, 0, np.nan, 0, 0], dtype=np.float32))


def test_change_reward_pays_each_stage_its_change_of_the_gap_and_sums_to_the_final_gap():
    gap_env, change_env = tiny_env(reward_k=0.0), tiny_env(reward_k=0.0, reward="change")
    actions = np.random.default_rng(1).uniform(-1, 1, (3, 5)).astype(np.float32)
    gaps, changes = [], []
    for env, rewards in ((gap_env, gaps), (change_env, changes)):
        env.reset(seed=4)
        for action in actions:
            _, reward, _, _, info = env.step(action)
            rewards.append(reward)
    # Same seed, same actions: the same training; only the payment differs.
    assert len(set(gaps)) == 3, "the weighting moved the gap at every stage"
    assert gaps[-1] == pytest.approx(100.0 * (info["acc_target"] - info["acc_reference"]))
    assert changes == pytest.approx([gaps[0], gaps[1] - gaps[0], gaps[2] - gaps[1]])
    assert sum(changes) == pytest.approx(gaps[-1])


def test_env_without_reference_trains_and_pays_nothing():
    env = StageWeightingEnv(EnvConfig.tiny(), TINY_DATA, OptimConfig(), "cpu", train_reference=False)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.full(5, -0.5, dtype=np.float32))
    assert reward == 0.0 and info["acc_reference"] is None
    target, reference = env.evaluate_test()
    assert reference is None and 0.0 <= target["accuracy"] <= 1.0


def test_a_cached_twin_gives_bit_identical_rewards_without_training_the_reference():
    env = tiny_env(reward="change")
    actions = np.random.default_rng(3).uniform(-1, 1, (3, 5)).astype(np.float32)

    def episode(options=None):
        env.reset(seed=7, options=options)
        steps = [env.step(action) for action in actions]
        return [(obs.tolist(), reward, info["acc_reference"], info["loss_reference"], info["loss_gap"])
                for obs, reward, _, _, info in steps], steps[-1][4]

    paired, last = episode()
    twin = last["twin"]
    assert len(twin["val_accuracy"]) == len(twin["train_loss"]) == 3
    assert env.recorded_twin == twin
    cached, last_cached = episode({"twin": twin})
    assert cached == paired, "every reward, observation and reference figure, bit for bit"
    assert env.trainer.reference is None, "the reference was not trained"
    assert "twin" not in last_cached and env.recorded_twin is None
    with pytest.raises(LawError, match="twin record"):
        env.reset(seed=7, options={"twin": {"val_accuracy": [0.1], "train_loss": [1.0]}})


def test_a_cached_warm_up_restores_the_episode_bit_for_bit():
    actions = np.random.default_rng(4).uniform(-1, 1, (3, 5)).astype(np.float32)

    def episode(env, seed):
        first, info = env.reset(seed=seed)
        return [first.tolist(), info] + [(obs.tolist(), reward) for obs, reward, *_ in map(env.step, actions)]

    plain = tiny_env(num_stages=5, warmup_stages=2, lr_drop_stages=(3,), steps_per_stage=4)
    cached = StageWeightingEnv(plain.cfg, TINY_DATA, OptimConfig(), "cpu", warm_up_cache=1)
    expected = episode(plain, 3)
    assert episode(cached, 3) == expected  # trains the warm-up and keeps it
    assert episode(cached, 3) == expected  # restores it
    assert len(cached._warm_ups) == 1
    episode(cached, 4)
    assert list(cached._warm_ups) != [] and len(cached._warm_ups) == 1, "only the newest seed is kept"
    assert episode(cached, 3) == expected


def test_searching_fewer_features_shrinks_the_action_and_zeroes_the_rest():
    env = tiny_env(features=("label", "loss"), action_scale=2.0)
    assert env.action_space.shape == (3,)
    env.reset(seed=0)
    info = env.step(np.array([0.5, -1.5, -0.5], dtype=np.float32))[4]
    # Full (theta_loss, theta_entropy, theta_density, theta_label, b), in FEATURE_NAMES order.
    assert info["theta"] == [-2.0, 0.0, 0.0, 1.0, 1.0]
    with pytest.raises(LawError, match="theta of label, loss, then b"):
        env.step(np.zeros(5, dtype=np.float32))


@pytest.mark.parametrize("field, value", [
    ("warmup_stages", 4), ("lr_drop_stages", (0,)), ("lr_drop_factor", 0.0),
    ("smoothing", 1.0), ("action_scale", 0.0), ("steps_per_stage", -1), ("model", "nope"),
    ("features", ("loss", "margin")), ("features", ()), ("features", ("loss", "loss")),
    ("bias_range", (1.0, 1.0)), ("bias_range", (0.0,)), ("reward", "accuracy"),
])
def test_bad_env_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as error:
        EnvConfig.tiny(**{field: value}).validate()
    assert error.value.field == field


# Reward sign. Calibrated regime: 40 % symmetric noise, an MLP that memorises the
# noisy labels within a few epochs once the learning rate drops, one unweighted
# warm-up stage. Down-weighting high-loss samples (theta_loss = -3, b = 0)
# keeps the target off the noisy labels, so it beats the reference on the clean
# validation split; up-weighting them does the opposite. Measured margins: every
# stage of 3 seeds x 2 data seeds had the expected sign, with the accuracy gap
# typically 4-10 points, so the assertions below (totals and majorities) are far
# from the edge.
NOISY_DATA = DataConfig(synthetic_train_size=1500, synthetic_test_size=50, val_size=500, batch_size=50,
                        eval_batch_size=500, noise="symmetric", noise_rate=0.4, augment=False,
                        synthetic_difficulty=0.3)
MEMORISING = EnvConfig(model="mlp", num_stages=5, warmup_stages=1, epochs_per_stage=2.0, lr_drop_stages=(2,))


@pytest.fixture(scope="module")
def noisy_env():
    return StageWeightingEnv(MEMORISING, NOISY_DATA, OptimConfig(lr=0.05), "cpu")


def rewards_of(env, action, seed):
    env.reset(seed=seed)
    rewards, infos, done = [], [], False
    while not done:
        _, reward, done, _, info = env.step(action)
        rewards.append(reward)
        infos.append(info)
    return rewards, infos


@pytest.mark.parametrize("seed", [0, 1])
def test_downweighting_high_loss_samples_earns_positive_reward_on_noisy_labels(noisy_env, seed):
    rewards, infos = rewards_of(noisy_env, np.array([-0.75, 0, 0, 0, -1.0], dtype=np.float32), seed)
    assert sum(rewards) > 0 and sum(r > 0 for r in rewards) >= 3
    assert rewards[-1] > 0
    assert all(i["mean_weight_noisy"] < i["mean_weight_clean"] for i in infos)


def test_upweighting_high_loss_samples_is_punished(noisy_env):
    rewards, infos = rewards_of(noisy_env, np.array([0.75, 0, 0, 0, -1.0], dtype=np.float32), 0)
    assert sum(rewards) < 0 and sum(r < 0 for r in rewards) >= 3
    assert all(i["mean_weight_noisy"] > i["mean_weight_clean"] for i in infos)
