"""``law apply``: train a new network with a learned policy, greedily, stage by stage.

The policy file carries the greedy policy (DDPG's actor, or a stage-wise
schedule), the feature spec it was searched with and the whole task it was
searched on (stage schedule, data, optimiser). With no flags, ``law apply``
trains on that very task; every flag overrides one setting of it. The stage
*count* is fixed (the actor's stage embedding knows no others); stage length,
model, data set and optimiser are free, which is what transfer means here.
"""
from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from agents.policies import Policy
from envs import EnvConfig, StageWeightingEnv, plain_info, require_validation
from law.config import to_dict, validate_all
from law.data import DataConfig
from law.errors import ConfigError
from law.io import atomic_write_json, environment_info, new_run_dir, run_folder, run_stamp
from law.policy_file import check_action_box, greedy_policy, policy_path
from law.progress import ProgressLine
from law.sample_weights import SampleWeightsLog
from law.train import resolve_device, seed_everything
from law.trainer import OptimConfig


@dataclass
class ApplyConfig:
    """Which policy to apply, and where results go."""

    policy: str = ""
    """Policy file written by `law search` (runs/<id>/policy.pt), or the name of a shipped policy (`law policies`)."""
    seed: int = 0
    """Seed of the new network's initialisation and batch order (the episode seed)."""
    reference: bool = True
    """Train an unweighted reference of the same seed alongside and report both."""
    device: str = "auto"
    """Training device: auto | cpu | cuda | cuda:N."""
    threads: int = 0
    """Torch CPU threads (0 = torch default)."""
    output_dir: str = "runs"
    """Folder that receives one sub-folder per run."""
    run_name: str = ""
    """Name of the run folder (default: {dataset}__law-apply__{seed}__{time})."""
    progress: bool = True
    """Show a progress line."""
    export_weights: bool = False
    """Write sample_weights.csv: every training sample's mean loss and weight per stage, and the twin's loss
    (read by `law inspect`)."""

    def validate(self) -> None:
        if not self.policy:
            raise ConfigError("policy", "is required: pass --policy runs/<search>/policy.pt or a shipped "
                                        "policy's name (law policies)")
        policy_path(self.policy)
        resolve_device(self.device)


def rollout(env: StageWeightingEnv, policy: Policy, seed: int,
            on_stage: Optional[Callable[[dict], None]] = None,
            on_reset: Optional[Callable[[dict], None]] = None, twin: Optional[dict] = None) -> list[dict]:
    """One greedy episode: ``reset(seed)``, then the policy's action at every stage.

    Returns one record per acting stage (the action, the reward and the env's
    info); ``on_reset`` sees the warm-up's info, ``on_stage`` each record as soon
    as it exists. ``twin`` replays a reference recorded by an earlier episode of
    this seed (``env.recorded_twin``) instead of training it.
    """
    obs, info = env.reset(seed=seed, options={"twin": twin})
    if on_reset is not None:
        on_reset(info)
    stages, done = [], False
    while not done:
        action = np.asarray(policy(obs), np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        record = {"action": action.tolist(), "reward": float(reward),
                  **{k: v for k, v in plain_info(info).items() if k not in ("weights", "twin")}}
        stages.append(record)
        if on_stage is not None:
            on_stage(record)
    return stages


def apply_policy(apply_cfg: ApplyConfig, env_cfg: EnvConfig, data_cfg: DataConfig,
                 optim_cfg: OptimConfig, policy: dict) -> dict:
    """Train with the policy acting greedily; returns the results written to ``results.json``."""
    validate_all(apply_cfg, env_cfg, data_cfg, optim_cfg)
    require_validation(data_cfg)
    check_action_box(policy, env_cfg)
    device = resolve_device(apply_cfg.device)
    if apply_cfg.threads:
        torch.set_num_threads(apply_cfg.threads)
    run_dir = new_run_dir(apply_cfg.output_dir, apply_cfg.run_name,
                          f"{data_cfg.dataset}__law-apply__{apply_cfg.seed}__{run_stamp()}")
    seed_everything(apply_cfg.seed)
    env = StageWeightingEnv(env_cfg, data_cfg, optim_cfg, device=device, train_reference=apply_cfg.reference)
    print(env.bundle.describe(), file=sys.stderr)
    bar = ProgressLine(env.acting_stages, "apply", enabled=apply_cfg.progress)
    with run_folder(run_dir), (SampleWeightsLog(run_dir, env.bundle, twin=apply_cfg.reference)
                               if apply_cfg.export_weights else nullcontext()) as sample_log:
        env.sample_log = sample_log
        stages = rollout(env, greedy_policy(policy), apply_cfg.seed,
                         on_stage=lambda s: bar.update(s["stage"] - env_cfg.warmup_stages + 1,
                                                       f"val acc {s['acc_target']:.3f}"))
        target_test, reference_test = env.evaluate_test()
        config = to_dict(apply_cfg, env_cfg, data_cfg, optim_cfg)
        results = {"kind": "apply", "config": config, "seed": apply_cfg.seed,
                   "environment": environment_info(), "policy_config": policy["config"],
                   "policy_kind": policy["policy"]["kind"], "selection": policy.get("selection"),
                   "test": {"target": target_test, "reference": reference_test}, "stages": stages}
        atomic_write_json(results, run_dir / "results.json")
    results["run_dir"] = str(run_dir)
    return results
