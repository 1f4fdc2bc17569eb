"""The policy file: what a search writes and ``law apply`` / ``law compare`` read.

A plain dict of tensors and primitives (``torch.load(weights_only=True)``):
the greedy policy's state (``agents.policies``), the feature spec it weights
by, the stage schedule it acts on and the whole task it was searched on
(data, optimiser), plus how it was selected.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Optional

import torch

from agents.policies import Policy, policy_from_state
from envs import EnvConfig
from law.config import to_dict
from law.data import DataConfig
from law.errors import ConfigError, LawError
from law.features import FEATURE_SPEC, check_feature_spec
from law.trainer import OptimConfig

POLICY_FORMAT = {"format": "law-policy", "version": 2}
SHIPPED = Path(__file__).resolve().parent / "policies"
"""Policies that come with LAW (``law policies``): the ones behind the README's measured tables."""


def shipped_policies() -> dict[str, dict]:
    """Name -> provenance of every policy shipped with LAW (``policies/index.json``)."""
    index = SHIPPED / "index.json"
    return json.loads(index.read_text()) if index.is_file() else {}


def policy_path(policy: str | Path) -> Path:
    """The file of ``policy``: a path, or the name of a shipped policy."""
    path = Path(policy).expanduser()
    if path.is_file():
        return path
    shipped = shipped_policies()
    if str(policy) in shipped:
        return SHIPPED / shipped[str(policy)]["file"]
    raise ConfigError("policy", f"no policy file at '{policy}' and no shipped policy of that name; shipped: "
                                f"{', '.join(shipped) or 'none'} (see `law policies`)")


def policy_file(policy_state: dict, env_cfg: EnvConfig, config: dict, selection: Optional[dict] = None) -> dict:
    """Everything ``law apply`` needs to run ``policy_state`` on the stages of ``env_cfg``."""
    return {**POLICY_FORMAT, "policy": policy_state, "feature_spec": dict(FEATURE_SPEC),
            "env": to_dict(env_cfg)["EnvConfig"], "config": config, "selection": selection}


def load_policy(path: str | Path) -> dict:
    """Read and check a policy file; its greedy policy's state is under ``"policy"``.

    ``path`` may name a shipped policy. Files of the first format (an actor under
    ``"actor"``) are read too.
    """
    path = policy_path(path)
    try:
        policy = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own advice (weights_only=False) would be wrong here
        raise LawError(f"'{path}' is not a LAW policy file: it holds Python objects, and a policy file holds "
                       "only tensors and plain values (write one with `law search`)") from None
    except Exception as error:  # truncated, or not a torch file at all
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LawError(f"'{path}' is not a LAW policy file: torch cannot read it ({reason})") from None
    if not isinstance(policy, dict) or policy.get("format") != "law-policy":
        raise LawError(f"'{path}' is not a LAW policy file (written by `law search`)")
    check_feature_spec(policy["feature_spec"])
    if "policy" not in policy:
        policy["policy"] = {"kind": "actor", "actor": policy["actor"]}
    return policy


def greedy_policy(policy: dict) -> Policy:
    """The callable policy of a loaded policy file."""
    return policy_from_state(policy["policy"])


def policy_env_config(policy: dict, overrides: dict) -> EnvConfig:
    """The searched stage schedule, with the user's overrides; the stage count is fixed."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in policy["env"].items()}
    fields.update(overrides)
    env_cfg = EnvConfig(**fields)
    searched = greedy_policy(policy).num_stages
    if env_cfg.num_stages != searched:
        raise ConfigError("num_stages", f"the policy was searched with {searched} stages and can "
                                        f"only act on {searched}; lengthen training with "
                                        "--epochs-per-stage instead")
    searched_features = tuple(policy["env"].get("features", env_cfg.features))
    if env_cfg.features != searched_features:
        raise ConfigError("features", f"the policy weights by {' '.join(searched_features)} (its actions "
                                      "have one theta per searched feature); leave --features out")
    return env_cfg


def check_action_box(policy: dict, env_cfg: EnvConfig, field: str = "env", name: str = "the policy") -> None:
    """Refuse, before any work, an env in which the policy's actions would mean another weighting.

    The features, the action map and its range are part of what an action means (a file written before
    action maps existed used the linear map); stage length, model and data are free.
    """
    searched = EnvConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in policy["env"].items()})
    box = ("features", "action_map", "bias_range",
           "action_scale" if searched.action_map == "linear" else "log_ratio_max")
    for setting in box:
        theirs, ours = getattr(searched, setting), getattr(env_cfg, setting)
        if theirs != ours:
            raise ConfigError(field, f"{name} was searched with {setting} {theirs}, this run uses {ours}: "
                                     "its actions would mean another weighting here")


def policy_task(policy: dict) -> tuple[DataConfig, OptimConfig]:
    """The data and optimiser the policy was searched with (``law apply``'s defaults)."""
    config = policy.get("config", {})

    def build(cls):
        fields = config.get(cls.__name__)
        if fields is None:
            return cls()
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    return build(DataConfig), build(OptimConfig)
