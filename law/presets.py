"""Named search presets: complete configs a user starts from, then overrides by flag.

``quick`` runs offline on the embedded data set in minutes on 2 CPU cores; the
others are the paper's settings for GPU clusters. A preset only sets defaults:
every flag given on the command line wins.
"""
from __future__ import annotations

from dataclasses import replace

from agents import DDPGConfig
from envs import EnvConfig
from law.data import DataConfig
from law.errors import ConfigError
from law.search import SearchConfig
from law.suites import CPU_IMBALANCED_SEARCH_ENV
from law.trainer import OptimConfig


def _quick() -> dict:
    """Embedded data in a regime where weighting matters: an MLP on 2,000 synthetic images
    with 60 % symmetric label noise memorises the noisy labels within two stages (training
    loss 1.0 -> 0.05), so down-weighting high-loss samples can beat the unweighted twin
    (README, "Search quality")."""
    return {
        # Common random numbers: 4 training seeds (each twin trained once), greedy
        # evaluation on 2 other seeds after every 10 episodes; policy.pt is the best of the start
        # prior and the 3 best evaluations, judged again on 2 more seeds at the end.
        "SearchConfig": SearchConfig(episodes=60, workers=2, seed_pool=4, eval_every=10, eval_seeds=2),
        # A small budget, as in the CPU suites (see law.suites): search (theta_loss,
        # theta_entropy, b), and pay each stage the change of the accuracy gap it made. The
        # entropy is the room the loss rules leave: with it the search beats the best of them
        # (docs/results.md, "Loss and entropy").
        "EnvConfig": EnvConfig(model="mlp", num_stages=8, warmup_stages=1, epochs_per_stage=2.0,
                               lr_drop_stages=(3,), keep_weights=True, features=("loss", "entropy"),
                               reward="change", reward_k=0.0),
        "DataConfig": DataConfig(dataset="synthetic", noise="symmetric", noise_rate=0.6,
                                 synthetic_train_size=2500, synthetic_test_size=1000, val_size=500,
                                 synthetic_image_size=32, synthetic_difficulty=0.6, augment=False,
                                 batch_size=50, eval_batch_size=500),
        "OptimConfig": OptimConfig(lr=0.01, lr_schedule="constant"),
        # Plain DDPG: on this task the pull towards the centre (action_penalty 0.5) cost 1.4
        # validation points in the search-quality benchmark (see README, "Search quality").
        "DDPGConfig": DDPGConfig(fdu_batch_size=256),
    }


PESSIMISTIC_ENSEMBLE = dict(n_critics=5, target_min_critics=2, pessimism=3.0)
"""DDPG switches that keep an actor started from a prior where its critics have data, instead of
running to a face of the box (docs/results.md, "Six searches each")."""


def _quick_longtail() -> dict:
    """The quick preset's task with clean labels and a long tail instead (ratio 20: class sizes 200 ... 10,
    676 training images): weighting by label frequency matters (the class-balanced fit wins +4.8
    validation points over the twin; README, "Search quality"). Searches (theta_loss, theta_label, b),
    with the pessimistic critic ensemble: plain DDPG kept the class-balanced prior in 5 of 6 searches."""
    preset = _quick()
    preset["DDPGConfig"] = replace(preset["DDPGConfig"], **PESSIMISTIC_ENSEMBLE)
    preset["EnvConfig"] = replace(preset["EnvConfig"], **CPU_IMBALANCED_SEARCH_ENV)  # the CPU suites' box
    preset["DataConfig"] = replace(preset["DataConfig"], noise="none", noise_rate=0.0, imbalance="longtail",
                                   imbalance_ratio=20.0)
    return preset


def _cifar_noisy(dataset: str) -> dict:
    """LAW paper, CIFAR with 40 % symmetric noise: 20k train / 5k val, 20 stages,
    lr 0.1 dropped /10 at stages 10, 13, 16, 8 workers."""
    return {
        "SearchConfig": SearchConfig(episodes=200, workers=8, fdu_every=8, gpus_per_worker=0.5, seed_pool=8,
                                     eval_every=20, eval_seeds=4),
        "EnvConfig": EnvConfig(model="resnet18", num_stages=20, warmup_stages=2, epochs_per_stage=10.0,
                               lr_drop_stages=(10, 13, 16), keep_weights=True),
        "DataConfig": DataConfig(dataset=dataset, noise="symmetric", noise_rate=0.4,
                                 train_size=20000, val_size=5000),
        "OptimConfig": OptimConfig(lr=0.1, lr_schedule="constant", nesterov=True),
        "DDPGConfig": DDPGConfig(),
    }


SEARCH_PRESETS = {
    "quick": _quick,
    "quick-longtail": _quick_longtail,
    "cifar10-noisy": lambda: _cifar_noisy("cifar10"),
    "cifar100-noisy": lambda: _cifar_noisy("cifar100"),
}


def search_preset(name: str) -> dict:
    if name not in SEARCH_PRESETS:
        raise ConfigError("preset", f"unknown preset '{name}'; known: {', '.join(SEARCH_PRESETS)}")
    return SEARCH_PRESETS[name]()

