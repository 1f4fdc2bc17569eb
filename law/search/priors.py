"""The priors a search starts from: the rules a person would try first, judged like any policy.

Before its first training episode a search runs a greedy evaluation of every
prior (the same evaluation seeds and score as every later one), then starts
its agent from the best: DDPG's actor is fitted to that prior's actions at the
observations of its evaluation episodes (``agents.DDPG.start_from``). The
family:

- ``neutral``: theta = 0, plain cross-entropy (its gap is 0 by construction);
- ``sharp loss rule``: down-weight by loss sharply (``sharp_loss_action``) at
  every acting stage;
- ``class-balanced fit`` (data whose largest class is at least ``IMBALANCED``
  times its smallest, and a search that weights by label): the (theta_label, b)
  of the box nearest to class-balanced weights, from the class counts alone;
- every policy the user names with ``--init-policy`` (a shipped name or a file).

``policy.pt`` is the best judged policy, a prior included: a search never
returns less than its best prior on its own evaluation seeds, and its summary
says what it added.
"""
from __future__ import annotations

import numpy as np
import torch

from agents import SchedulePolicy
from baselines.class_balanced import class_balanced_weights
from envs import EnvConfig
from law.errors import ConfigError
from law.features import FEATURE_NAMES, log_frequency_by_class, zscore_columns
from law.methods import MethodConfig
from law.policy import policy_weights
from law.policy_file import check_action_box, load_policy

IMBALANCED = 2.0
"""Largest over smallest class size from which the class-balanced fit joins the family."""
GRID = 81
"""Actions per axis of the class-balanced fit's grid search: steps of 0.025."""
TIE = 0.01
"""Log-weight RMSE within which two class-balanced fits count as equal (weights 1 % apart)."""
LABEL = FEATURE_NAMES.index("label")


def constant_schedule(env_cfg: EnvConfig, action: np.ndarray, first: int | None = None) -> np.ndarray:
    """One action at every stage from ``first`` (default: the first acting stage) on; 0 before."""
    table = np.zeros((env_cfg.num_stages, env_cfg.action_dim), np.float32)
    table[env_cfg.warmup_stages if first is None else first:] = action
    return table


def sharp_loss_action(env_cfg: EnvConfig) -> np.ndarray:
    """Down-weighting by loss, sharply. Linear map: theta_loss = -action_scale and b at the low end of
    its range, the box's corner. Log-ratio map: the weighting of the default linear box's corner
    (theta_loss = -4, b = 0: the higher-loss half of each batch falls off by e^-8 per two batch-stds),
    b clipped into the range; an interior point of the default log-ratio box."""
    if "loss" not in env_cfg.features:
        raise ConfigError("features", "the sharp loss rule weights by loss; this search has no loss feature")
    if env_cfg.action_map == "linear":
        action = np.zeros(env_cfg.action_dim, np.float32)
        action[env_cfg.features.index("loss")] = -1.0
        action[-1] = -1.0
        return action
    theta = np.zeros(len(FEATURE_NAMES) + 1)
    theta[FEATURE_NAMES.index("loss")], theta[-1] = -4.0, np.clip(0.0, *env_cfg.bias_range)
    return np.clip(env_cfg.action(theta), -1.0, 1.0)


def fit_to_class_balanced(counts: torch.Tensor, env_cfg: EnvConfig, beta: float, batch_size: int,
                          batches: int = 64, seed: int = 0) -> tuple[np.ndarray, float]:
    """The action (theta_label and b of the box, the rest 0) whose weights come nearest, in log scale
    over batches drawn from the class sizes ``counts``, to class-balanced weights (``beta``); of fits
    equal to within ``TIE``, the one nearest the box's centre.

    Returns the action and the root-mean-square difference of log weights it leaves.
    """
    if "label" not in env_cfg.features:
        raise ConfigError("features", "the class-balanced fit weights by the label feature; this search "
                                      f"has only {', '.join(env_cfg.features)}")
    labels = torch.multinomial(counts.float(), batches * batch_size, replacement=True,
                               generator=torch.Generator().manual_seed(seed)).reshape(batches, batch_size)
    features = torch.zeros(batches, batch_size, len(FEATURE_NAMES))
    features[..., LABEL] = torch.stack([zscore_columns(log_frequency_by_class(counts)[y][:, None])[:, 0]
                                        for y in labels])
    cb = class_balanced_weights(counts, beta or None).float()[labels]
    log_cb = (cb / cb.mean(dim=1, keepdim=True)).log()
    fits = []
    for a_label in torch.linspace(-1.0, 1.0, GRID):
        for a_b in torch.linspace(-1.0, 1.0, GRID):
            action = np.zeros(env_cfg.action_dim, np.float32)
            action[env_cfg.features.index("label")], action[-1] = a_label, a_b
            theta = torch.from_numpy(env_cfg.theta(action))
            log_w = policy_weights(features, theta[:-1], theta[-1]).log()  # every batch at once
            fits.append(((log_w - log_cb).pow(2).mean().sqrt().item(), action))
    # Class-balanced weights are an exponential tilt, which the sigmoid reaches only as b -> -inf: the
    # error keeps falling, by ever less, towards b's low end. Of the fits within TIE of the best, the
    # one nearest the box's centre: a tanh actor cannot sit on a face of the box.
    best = min(error for error, _ in fits)
    error, action = min(((error, action) for error, action in fits if error <= best + TIE),
                        key=lambda fit: float(np.square(fit[1]).sum()))
    return action, error


def imbalanced(counts: torch.Tensor) -> bool:
    return bool(counts.min() > 0 and counts.max() / counts.min() >= IMBALANCED)


def check_prior(policy: dict, env_cfg: EnvConfig, name: str) -> None:
    """Refuse, before any work, a policy whose actions would mean something else in this search."""
    searched = policy["env"].get("num_stages")
    if searched is not None and searched != env_cfg.num_stages:
        raise ConfigError("init_policy", f"'{name}' was searched with num_stages {searched}, this search uses "
                                         f"{env_cfg.num_stages}: it acts on other stages")
    check_action_box(policy, env_cfg, "init_policy", f"'{name}'")


def prior_family(env_cfg: EnvConfig, class_counts: torch.Tensor, batch_size: int,
                 init_policies: tuple[str, ...] = ()) -> dict[str, dict]:
    """Name -> greedy policy state of every prior of this search (see the module docstring)."""
    family = {"neutral": SchedulePolicy(constant_schedule(env_cfg, np.zeros(env_cfg.action_dim))).state_dict()}
    if "loss" in env_cfg.features:
        family["sharp loss rule"] = SchedulePolicy(constant_schedule(env_cfg, sharp_loss_action(env_cfg))).state_dict()
    if "label" in env_cfg.features and imbalanced(class_counts):
        action, _ = fit_to_class_balanced(class_counts, env_cfg, MethodConfig().cb_beta, batch_size)
        family["class-balanced fit"] = SchedulePolicy(constant_schedule(env_cfg, action)).state_dict()
    for name in init_policies:
        policy = load_policy(name)
        check_prior(policy, env_cfg, name)
        family[f"--init-policy {name}"] = policy["policy"]
    return family
