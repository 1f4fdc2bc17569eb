"""Distributed policy search: env workers on Ray, one learner, resumable exactly.

Shape of a search (LAW's parallel 3SM search):

* ``N`` env workers (Ray actors), each owning one environment: one pair of
  target/reference networks. In every *round* each worker makes one call:
  it starts an episode (fresh networks, unweighted warm-up) or trains the
  next stage of its episode with the action the learner chose.
* One learner (this driver process) owning the agent (DDPG's shared
  actor/critic, or random search) and the transition buffer. After each round
  it adds the transitions that came back and runs one full-data update (FDU).

Why actions travel instead of actor weights: the action of a stage is a pure
function of the stage's observation and the actor *after* the last update, so
computing it at the learner is exactly "workers get the new weights", without
shipping weights or duplicating the exploration noise on every worker.

Common random numbers: training episodes cycle through ``seed_pool`` episode
seeds. The unweighted twin of an episode depends only on its seed, so each
seed's twin is trained once, cached (``StageWeightingEnv``'s twin record) and
replayed afterwards: later episodes train the target alone. Each worker also
keeps the end of the unweighted warm-up of every recurring seed.

Greedy evaluation: every ``eval_every`` training episodes the agent's greedy
policy (no exploration) is run on ``eval_seeds`` seeds of its own, and its
mean final gap over its twin on the clean validation split is its score.
``policy.pt`` is the best-scoring policy, ``policy_last.pt`` the last one.

Exact replay: each slot remembers the actions its episode took. A worker
whose process died is restarted by Ray and replays those actions before
redoing its call, within the same round; ``--resume`` after the driver died
does the same for every episode in flight. Training is deterministic on CPU,
so an interrupted search ends bit for bit where an uninterrupted one does.
"""
from law.search.config import (AGENTS, CHECKPOINT, LAST_POLICY, OPERATIONAL, POLICY, SearchConfig,
                               evaluation_seeds, noise_rng, training_seed)
from law.search.run import Search, SearchFinished, resume_search, search
from law.search.workers import EnvWorker, init_ray

__all__ = ["AGENTS", "CHECKPOINT", "LAST_POLICY", "OPERATIONAL", "POLICY", "SearchConfig", "Search",
           "SearchFinished", "EnvWorker", "evaluation_seeds", "init_ray", "noise_rng", "resume_search", "search",
           "training_seed"]
