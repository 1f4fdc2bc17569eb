"""What an action of the search's box means: the linear (paper's) and the log-ratio coordinates."""
import numpy as np
import pytest
import torch

from envs import EnvConfig
from law.errors import ConfigError, LawError
from law.features import FEATURE_NAMES
from law.methods import MethodConfig
from law.policy import log_weight_ratio, policy_weights, theta_for_log_ratio
from law.policy_file import check_action_box, load_policy, policy_env_config
from law.search.priors import fit_to_class_balanced, sharp_loss_action

LOSS, LABEL = FEATURE_NAMES.index("loss"), FEATURE_NAMES.index("label")
LOG_RATIO = EnvConfig(features=("loss", "label"), action_map="log_ratio", bias_range=(-3.0, 3.0))
LINEAR = EnvConfig(features=("loss", "label"), bias_range=(-2.0, 2.0))  # the long-tail profile's box
# The long-tail cpu profile's class sizes (ratio 100).
LONG_TAIL = torch.tensor([int(1209 * 100 ** (-c / 9)) for c in range(10)])


def box_actions(env_cfg: EnvConfig, n: int = 200) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, env_cfg.action_dim)).astype(np.float32)


def measured_log_ratio(theta: np.ndarray, feature: int) -> float:
    """log w(+1 std) - log w(-1 std) in a real batch weighting (the other features at the batch mean)."""
    features = torch.zeros(2, len(FEATURE_NAMES))
    features[:, feature] = torch.tensor([1.0, -1.0])
    full = torch.from_numpy(theta)
    weights = policy_weights(features, full[:-1], full[-1])
    return (weights[0].log() - weights[1].log()).item()


@pytest.mark.parametrize("env_cfg", [LINEAR, LOG_RATIO], ids=["linear", "log_ratio"])
def test_action_to_weighting_and_back_round_trips_and_stays_finite(env_cfg):
    for action in box_actions(env_cfg):
        theta = env_cfg.theta(action)
        assert np.isfinite(theta).all() and theta.dtype == np.float32
        assert env_cfg.bias_range[0] <= theta[-1] <= env_cfg.bias_range[1]
        assert not np.delete(theta[:-1], [LOSS, LABEL]).any(), "unsearched features keep theta 0"
        np.testing.assert_allclose(env_cfg.action(theta), action, atol=2e-5)
    assert (env_cfg.theta(np.zeros(env_cfg.action_dim))[:-1] == 0).all(), "action 0 is plain CE, bit for bit"
    with pytest.raises(LawError, match="theta 0 outside the searched features"):
        env_cfg.action(np.array([0, 1.0, 0, 0, 0]))


def test_the_linear_map_is_the_papers_theta_equals_scale_times_action():
    action = np.array([-0.3, 0.7, 0.25], np.float32)
    theta = LINEAR.theta(action)
    assert theta[LOSS] == np.float32(4.0) * action[0] and theta[LABEL] == np.float32(4.0) * action[1]
    assert theta[-1] == np.float32(-2.0) + np.float32(4.0) * (action[2] + np.float32(1.0)) / np.float32(2.0)


def test_a_log_ratio_coordinate_is_the_weight_ratio_whatever_b():
    """The same step of the label coordinate multiplies the tail/head weight ratio by the same factor at
    every b; in the linear map it differs about 50-fold across the box."""
    for a_b in (-1.0, -0.5, 0.0, 0.5, 1.0):
        for a_label in (-0.9, -0.3, 0.0, 0.4):
            theta = LOG_RATIO.theta(np.array([0.0, a_label, a_b], np.float32))
            assert measured_log_ratio(theta, LABEL) == pytest.approx(12.0 * a_label, abs=1e-4)
    step = {a_b: measured_log_ratio(LINEAR.theta(np.array([0.0, -0.1, a_b], np.float32)), LABEL)
            for a_b in (-1.0, 1.0)}
    assert abs(step[-1.0]) > 40 * abs(step[1.0]), step  # 1.57 against 0.03


def test_closed_form_inverse_of_the_log_ratio():
    for bias in (-20.0, -3.0, 0.0, 2.5, 20.0):
        for rho in (-40.0, -8.0, -1e-3, 0.0, 0.5, 12.0, 40.0):
            theta = theta_for_log_ratio(rho, bias)
            assert np.isfinite(theta) and log_weight_ratio(theta, bias) == pytest.approx(rho, abs=1e-8)
    assert theta_for_log_ratio(-8.0, 0.0) == pytest.approx(-4.0, abs=1e-3)  # the linear box's sharp corner
    assert theta_for_log_ratio(0.0, 1.7) == 0.0


def tail_over_head(env_cfg: EnvConfig, action: np.ndarray) -> float:
    """Mean weight of the 3 rarest classes over the 3 largest, in batches drawn from LONG_TAIL."""
    from law.features import log_frequency_by_class, zscore_columns
    batches = torch.multinomial(LONG_TAIL.float(), 100 * 128, replacement=True,
                                generator=torch.Generator().manual_seed(0)).reshape(100, 128)
    features = torch.zeros(*batches.shape, len(FEATURE_NAMES))
    features[..., LABEL] = torch.stack([zscore_columns(log_frequency_by_class(LONG_TAIL)[y][:, None])[:, 0]
                                        for y in batches])
    full = torch.from_numpy(env_cfg.theta(action))
    weights = policy_weights(features, full[:-1], full[-1])
    return (weights[torch.isin(batches, torch.arange(7, 10))].mean()
            / weights[torch.isin(batches, torch.arange(3))].mean()).item()


def best_label_coordinate(env_cfg: EnvConfig, a_b: float, log_cb: torch.Tensor, features: torch.Tensor) -> float:
    """The label coordinate whose weights come nearest to class-balanced ones at shape coordinate a_b."""
    def error(a_label):
        full = torch.from_numpy(env_cfg.theta(np.array([0.0, a_label, a_b], np.float32)))
        return (policy_weights(features, full[:-1], full[-1]).log() - log_cb).pow(2).mean().item()
    return min(np.linspace(-1, 1, 161), key=error)


def test_the_class_balanced_fit_and_the_sharp_loss_rule_are_interior_in_log_ratio_coordinates():
    from baselines.class_balanced import class_balanced_weights
    from law.features import log_frequency_by_class, zscore_columns
    beta = MethodConfig().cb_beta
    fit, error = fit_to_class_balanced(LONG_TAIL, LOG_RATIO, beta, batch_size=128)
    assert np.abs(fit).max() < 0.9 and error < 0.2, (fit, error)
    sharp = sharp_loss_action(LOG_RATIO)
    assert np.abs(sharp).max() < 0.9 and LOG_RATIO.theta(sharp)[LOSS] == pytest.approx(-4.0, abs=1e-3)
    assert (sharp_loss_action(LINEAR)[[0, -1]] == -1.0).all(), "in the linear box the rule is a corner"
    # The class-balanced tilt needs the same label coordinate whatever b in log-ratio coordinates; in
    # linear ones a diagonal: from b = -2 to b = 2 it moves 6-fold.
    labels = torch.multinomial(LONG_TAIL.float(), 16 * 128, replacement=True,
                               generator=torch.Generator().manual_seed(0)).reshape(16, 128)
    features = torch.zeros(*labels.shape, len(FEATURE_NAMES))
    features[..., LABEL] = torch.stack([zscore_columns(log_frequency_by_class(LONG_TAIL)[y][:, None])[:, 0]
                                        for y in labels])
    cb = class_balanced_weights(LONG_TAIL, beta).float()[labels]
    log_cb = (cb / cb.mean(dim=1, keepdim=True)).log()
    spread = {}
    for name, env_cfg in (("linear", LINEAR), ("log_ratio", LOG_RATIO)):
        best = [best_label_coordinate(env_cfg, a_b, log_cb, features) for a_b in (-1.0, 0.0, 1.0)]
        assert all(a < 0 for a in best), (name, best)
        spread[name] = max(best) / min(best)  # both negative: the smallest |a| over the largest
    assert spread["log_ratio"] > 0.5 > 0.2 > spread["linear"], spread
    # The fit reaches class-balanced tail/head weights, and the box reaches well beyond them.
    cb_ratio = (class_balanced_weights(LONG_TAIL, beta)[7:].mean()
                / class_balanced_weights(LONG_TAIL, beta)[:3].mean()).item()
    assert tail_over_head(LOG_RATIO, fit) == pytest.approx(cb_ratio, rel=0.5)
    assert tail_over_head(LOG_RATIO, np.array([0.0, -0.6, -0.9], np.float32)) > 4 * cb_ratio


def test_a_policy_is_applied_only_in_the_box_it_was_searched_in():
    shipped = load_policy("longtail-cifar10-cpu")  # written before action maps: linear
    assert "action_map" not in shipped["env"]
    env_cfg = policy_env_config(shipped, {})
    assert env_cfg.action_map == "linear"
    check_action_box(shipped, env_cfg)
    for change in ({"action_map": "log_ratio"}, {"action_scale": 2.0}, {"bias_range": (0.0, 4.0)}):
        with pytest.raises(ConfigError, match="would mean another weighting"):
            check_action_box(shipped, policy_env_config(shipped, change))
    check_action_box(shipped, policy_env_config(shipped, {"log_ratio_max": 3.0}))  # not used by linear
    searched = {"env": {"features": ["loss", "label"], "action_map": "log_ratio", "bias_range": [-3.0, 3.0]}}
    check_action_box(searched, LOG_RATIO)
    with pytest.raises(ConfigError, match="log_ratio_max"):
        check_action_box(searched, EnvConfig(features=("loss", "label"), action_map="log_ratio",
                                             bias_range=(-3.0, 3.0), log_ratio_max=6.0))


def test_bad_action_maps_are_refused():
    with pytest.raises(ConfigError, match="action_map.*known: linear, log_ratio"):
        EnvConfig(action_map="tanh").validate()
    with pytest.raises(ConfigError, match="log_ratio_max"):
        EnvConfig(action_map="log_ratio", log_ratio_max=100.0).validate()
    with pytest.raises(ConfigError, match="bias_range"):
        EnvConfig(bias_range=(-50.0, 0.0)).validate()
