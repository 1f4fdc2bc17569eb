"""The LAW policy of a comparison: the one given, or one searched on the validation split."""
from __future__ import annotations

import os
import shutil
from dataclasses import replace

import ray
import torch

from envs import EnvConfig
from law.bench.experiment import CompareConfig, Experiment, say
from law.errors import ConfigError
from law.policy_file import greedy_policy, load_policy, policy_path
from law.search import CHECKPOINT, POLICY, init_ray, resume_search, search

def search_configs(exp: Experiment) -> tuple:
    """(SearchConfig, EnvConfig, DataConfig, OptimConfig, DDPGConfig) of the suite's search."""
    p, cfg = exp.profile, exp.cfg
    env = EnvConfig.from_schedule(exp.schedule, exp.search_model, data_seed=p.search_data_seed, **p.search_env)
    search_cfg = replace(p.search, episodes=cfg.episodes or p.search.episodes,
                         workers=cfg.workers or p.search.workers, address=cfg.address,
                         output_dir=str(exp.out), run_name="search", progress=cfg.progress)
    if search_cfg.gpus_per_worker and not cluster_has_gpus(cfg):
        search_cfg = replace(search_cfg, gpus_per_worker=0.0)
    return search_cfg, env, exp.search_data, replace(p.optim, lr_schedule="constant"), p.ddpg


def cluster_has_gpus(cfg: CompareConfig) -> bool:
    """Whether GPU shares can be scheduled: a local GPU, or GPUs in the Ray cluster joined."""
    if cfg.device == "cpu":
        return False
    if torch.cuda.is_available():
        return True
    if not (cfg.address or os.environ.get("RAY_ADDRESS")):
        return False
    init_ray(cfg.address)
    return ray.cluster_resources().get("GPU", 0) > 0


def check_policy(exp: Experiment, path: str) -> None:
    """Refuse, before any training, a policy that cannot act on the suite's stages."""
    searched = greedy_policy(load_policy(path)).num_stages
    if searched != exp.schedule.num_stages:
        raise ConfigError("policy", f"{path} acts on {searched} stages but profile {exp.cfg.profile} of "
                                    f"{exp.suite.name} has {exp.schedule.num_stages}; search one for this "
                                    "profile (leave --policy empty)")


def ensure_policy(exp: Experiment) -> str:
    """The policy file to apply: the given one, a finished search's, or a new (resumed) search's."""
    if exp.cfg.policy:
        check_policy(exp, exp.cfg.policy)
        return str(policy_path(exp.cfg.policy))
    folder = exp.out / "search"
    if (folder / "results.json").is_file():  # finished (policy.pt is written as soon as one is evaluated)
        return str(folder / POLICY)
    search_cfg, env, data, optim, ddpg = search_configs(exp)
    say(exp, f"searching a LAW policy ({search_cfg.episodes} episodes, {search_cfg.workers} workers, "
              f"{exp.search_model}) -> {folder}")
    if (folder / CHECKPOINT).is_file():
        return resume_search(folder, progress=search_cfg.progress)["policy"]
    if folder.exists():  # died before its first checkpoint: nothing to keep
        shutil.rmtree(folder)
    return search(search_cfg, env, data, optim, ddpg)["policy"]
