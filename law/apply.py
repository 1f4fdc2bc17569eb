"""``law apply``: train a new network with a learned policy, greedily, stage by stage.

The policy file carries the actor, the feature spec it was trained with and
the stage schedule it was searched under. The new network gets the same number
of stages (the actor's stage embedding knows no others); stage *length*, model,
data set and optimiser are free, which is what transfer means here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from agents import load_actor
from envs import EnvConfig, StageWeightingEnv
from law.config import to_dict, validate_all
from law.data import DataConfig
from law.errors import ConfigError, LawError
from law.features import check_feature_spec
from law.io import atomic_write_json, environment_info, new_run_dir, run_stamp
from law.search import plain_info
from law.progress import ProgressLine
from law.train import resolve_device, seed_everything
from law.trainer import OptimConfig


@dataclass
class ApplyConfig:
    """Which policy to apply, and where results go."""

    policy: str = ""
    """Policy file written by `law search` (runs/<id>/policy.pt)."""
    seed: int = 0
    """Seed of the new network's initialisation, data and batch order."""
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

    def validate(self) -> None:
        if not self.policy:
            raise ConfigError("policy", "is required: pass --policy runs/<search>/policy.pt")
        if not Path(self.policy).is_file():
            raise ConfigError("policy", f"no policy file at '{self.policy}'")
        resolve_device(self.device)


def load_policy(path: str | Path) -> dict:
    """Read and check a policy file; refuses files of another format or feature set."""
    try:
        policy = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say what it is not
        raise LawError(f"'{path}' is not a readable LAW policy file ({error})") from error
    if not isinstance(policy, dict) or policy.get("format") != "law-policy":
        raise LawError(f"'{path}' is not a LAW policy file (written by `law search`)")
    check_feature_spec(policy["feature_spec"])
    return policy


def policy_env_config(policy: dict, overrides: dict) -> EnvConfig:
    """The searched stage schedule, with the user's overrides; the stage count is fixed."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in policy["env"].items()}
    fields.update(overrides)
    env_cfg = EnvConfig(**fields)
    searched = policy["actor"]["num_stages"]
    if env_cfg.num_stages != searched:
        raise ConfigError("num_stages", f"the policy was searched with {searched} stages and can "
                                        f"only act on {searched}; lengthen training with "
                                        "--epochs-per-stage instead")
    searched_features = tuple(policy["env"].get("features", env_cfg.features))
    if env_cfg.features != searched_features:
        raise ConfigError("features", f"the policy weights by {' '.join(searched_features)} (its actions "
                                      "have one theta per searched feature); leave --features out")
    return env_cfg


def apply_policy(apply_cfg: ApplyConfig, env_cfg: EnvConfig, data_cfg: DataConfig,
                 optim_cfg: OptimConfig, policy: dict) -> dict:
    """Train with the policy acting greedily; returns the results written to ``results.json``."""
    validate_all(apply_cfg, env_cfg, data_cfg, optim_cfg)
    device = resolve_device(apply_cfg.device)
    if apply_cfg.threads:
        torch.set_num_threads(apply_cfg.threads)
    run_dir = new_run_dir(apply_cfg.output_dir, apply_cfg.run_name,
                          f"{data_cfg.dataset}__law-apply__{apply_cfg.seed}__{run_stamp()}")
    seed_everything(apply_cfg.seed)
    actor = load_actor(policy["actor"])
    env = StageWeightingEnv(env_cfg, data_cfg, optim_cfg, device=device, train_reference=apply_cfg.reference)
    obs, _ = env.reset(seed=apply_cfg.seed)
    stages, done = [], False
    bar = ProgressLine(env_cfg.num_stages - env_cfg.warmup_stages, "apply", enabled=apply_cfg.progress)
    while not done:
        with torch.no_grad():
            action = actor(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        info = {k: v for k, v in plain_info(info).items() if k != "weights"}
        stages.append({"action": action.tolist(), "reward": float(reward), **info})
        bar.update(len(stages), f"val acc {info['acc_target']:.3f}")
    target_test, reference_test = env.evaluate_test()
    config = to_dict(apply_cfg, env_cfg, data_cfg, optim_cfg)
    results = {"kind": "apply", "config": config, "seed": apply_cfg.seed,
               "environment": environment_info(), "policy_config": policy["config"],
               "test": {"target": target_test, "reference": reference_test}, "stages": stages}
    atomic_write_json(results, run_dir / "results.json")
    results["run_dir"] = str(run_dir)
    return results

