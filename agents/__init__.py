"""The LAW agent: DDPG with stage embeddings, full-data updates and its buffer."""
from .buffer import Transition, TransitionBuffer, Transitions
from .config import DDPGConfig
from .ddpg import DDPG
from .networks import Actor, Critic, load_actor, polyak_update
from .policies import ActorPolicy, Behaviour, SchedulePolicy, policy_from_state
from .random_search import RandomSearch

__all__ = [
    "DDPG",
    "DDPGConfig",
    "Actor",
    "Critic",
    "load_actor",
    "ActorPolicy",
    "Behaviour",
    "SchedulePolicy",
    "policy_from_state",
    "RandomSearch",
    "polyak_update",
    "Transition",
    "Transitions",
    "TransitionBuffer",
]
