"""The gymnasium environment of LAW's search: one step = one 3SM stage, reward = DNR.

``import envs`` registers ``law/StageWeighting-v0``, so
``gymnasium.make(ENV_ID, env_cfg=..., data_cfg=..., optim_cfg=..., device=...)`` works.
"""
import gymnasium

from envs.config import ACTION_MAPS, EnvConfig
from envs.stage_env import StageWeightingEnv, plain_info, require_validation

ENV_ID = "law/StageWeighting-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="envs.stage_env:StageWeightingEnv")

__all__ = ["ACTION_MAPS", "ENV_ID", "EnvConfig", "StageWeightingEnv", "plain_info", "require_validation"]
