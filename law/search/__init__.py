"""Distributed policy search: env workers on Ray, one learner, resumable exactly.

Shape of a search (LAW's parallel 3SM search):

* ``N`` env workers (Ray actors), each owning one environment (one pair of
  target/reference networks), or ``episodes_per_worker`` of them sharing one
  copy of the data. A worker runs whole episodes per call (fresh networks,
  unweighted warm-up, every acting stage) with the behaviour each episode was
  given: the actor plus exploration noise (DDPG), uniform draws (random
  search) or a frozen greedy policy (an evaluation); several at once in
  lockstep, their networks trained as one stack (``law.stacked``).
* One learner (this driver process) owning the agent (DDPG's shared
  actor/critic, or random search) and the transition buffer. It learns from
  finished episodes in episode order, one stage end at a time (add the
  transition; a full-data update (FDU) every ``fdu_every``).

No barrier, and still one answer: training episode ``n`` is made, its behaviour
fixed, once the learner has learned from episodes ``0..n-in_flight``. A worker
that finishes takes the next episode before the learner digests its result, so
no worker waits for another or for the FDU; and what a search computes depends
on its settings alone, not on the number of workers or who finishes first.

Common random numbers: training episodes cycle through ``seed_pool`` episode
seeds. The unweighted twin of an episode depends only on its seed, so each
seed's twin is trained once, cached (``StageWeightingEnv``'s twin record) and
replayed afterwards: later episodes train the target alone. Each worker also
keeps the end of the unweighted warm-up of every recurring seed.

Greedy evaluation: every ``eval_every`` training episodes the agent's greedy
policy (no exploration) is run on ``eval_seeds`` seeds of its own, and its
mean final gap over its twin on the clean validation split is its score.
``policy.pt`` is the best-scoring policy, ``policy_last.pt`` the last one.

Priors (``law.search.priors``): before the first training episode the same
evaluation judges the rules a person would try first (and any
``--init-policy``); the agent starts from the best of them, and ``policy.pt``
may be a prior: a search never returns less than its best prior on its
evaluation seeds.

Final judging: once the last evaluation is in, the prior the agent started
from and the ``finalists`` best evaluations run again on ``final_seeds``
seeds of their own; ``policy.pt`` is the finalist with the best mean over all
its seeds. The best of many noisy evaluations is the luckiest as much as the
best; a second look at a few of them keeps the one that holds up.

Exact replay: episodes are deterministic on CPU (the exploration of a stage
derives from the search seed, the episode and the stage). A worker whose
process died is restarted by Ray and its episode runs again from the start;
``--resume`` after the driver died reruns the episodes that were in flight.
Either way the search ends bit for bit where an uninterrupted one does.
"""
from law.search.config import (AGENTS, CHECKPOINT, LAST_POLICY, OPERATIONAL, POLICY, SearchConfig,
                               evaluation_seeds, final_seeds, noise_rng, training_seed)
from law.search.priors import prior_family
from law.search.learner import Search
from law.search.run import SearchFinished, resume_search, search
from law.search.workers import EnvWorker, init_ray

__all__ = ["AGENTS", "CHECKPOINT", "LAST_POLICY", "OPERATIONAL", "POLICY", "SearchConfig", "Search",
           "prior_family",
           "SearchFinished", "EnvWorker", "evaluation_seeds", "final_seeds", "init_ray", "noise_rng", "resume_search", "search",
           "training_seed"]
