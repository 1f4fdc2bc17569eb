"""The 3SM stage environment: one step trains one stage of paired training.

An episode is one complete training of a target and a reference network
(``law.paired``). Training is cut into ``num_stages`` stages; the first
``warmup_stages`` are trained unweighted inside ``reset``. Each ``step(action)``
then trains one stage with the weighting function ``w = 1 + tanh(theta . f + b)``
(scaled to batch mean 1, see ``law.policy``) held fixed for all of the stage's
steps, evaluates both networks on the clean validation split (the stage's one
host sync) and pays the duplicate-network reward

    r = r_w * (acc_target - acc_reference),   r_w = s * exp(k * epoch / total_epochs).

Why a difference of accuracies: the reference shares everything with the
target except the weights, so the difference isolates what the policy did,
with the noise of initialisation, batch order and the learning-rate schedule
cancelled out. Why ``r_w`` grows with the epoch: late accuracy is what the
final network keeps, and early stages' gains are easily undone.

``reward="change"`` pays each stage the change of that gap instead,
``r_T = r_w * (gap_T - gap_{T-1})`` (the gap is 0 after the warm-up): a stage
is credited with what happened during it, not with the gap every earlier
stage left behind, and with ``k = 0`` an episode's return is exactly ``s``
times the final gap, the quantity a user keeps.

Twin cache: the reference depends only on the episode seed, never on the
policy. ``reset(seed=s, options={"twin": record})`` takes the ``info["twin"]``
that an earlier episode of the same seed returned at its end (the
reference's validation accuracy and training loss after every acting stage)
and trains the target alone: the rewards are bit-identical on CPU, at about
half the cost. A search that reuses episode seeds (common random numbers)
pays for each twin once.

The unweighted warm-up depends on the seed alone as well: with
``warm_up_cache=N`` the env keeps the states the warm-ups of its last ``N``
seeds ended in and restores them instead of training again.

Spaces (the contract with the agent, which knows nothing of networks):

- observation ``Box((3,), float32)``: ``[stage_index, smoothed_train_loss,
  smoothed_val_accuracy]`` of the target. ``stage_index`` is the integer index
  of the stage about to be trained (``warmup_stages`` after reset,
  ``num_stages`` at the end), stored as a float; the agent embeds it. The loss
  is clipped to ``[0, loss_clip]``; both read 0 before any stage is trained
  (``warmup_stages = 0``). Smoothing is an EMA over stage ends.
- action ``Box(-1, 1, (len(features) + 1,), float32)``: one coordinate per
  searched feature, then ``b`` (mapped linearly onto ``bias_range``). By
  default all four features: ``theta_loss, theta_entropy, theta_density,
  theta_label, b``; features left out get ``theta = 0``. The box is normalised
  (what gymnasium's checker asks for and what a tanh actor emits).
  ``action_map`` says what a feature's coordinate is: ``linear`` (the
  paper's), ``theta = action_scale * action``; ``log_ratio``, the log weight
  ratio ``log_ratio_max * action`` between samples one batch-std above and
  below the mean in that feature, whatever ``b`` (``b`` then only shapes the
  weighting: an exponential tilt below about -2, a truncation of the batch's
  upper tail above 0). In linear coordinates the same step of ``theta`` is a
  factor of ``e^4`` at ``b = -2`` and almost nothing at ``b = 2``, so what is
  good on the long tail (a mild tilt at low ``b``) is a corner of the box; in
  log-ratio coordinates it and the sharp loss rule are interior points. Any
  action whose feature coordinates are 0 trains exactly like plain CE.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch

from envs.config import EnvConfig
from envs.observation import StageObserver
from law.data import DataConfig, load_data
from law.errors import ConfigError, LawError
from law.paired import PairedTrainer, Requests, StageTraining, run_alone
from law.policy import LAWPolicyWeighter
from law.sample_weights import SampleWeightsLog
from law.trainer import OptimConfig


def require_validation(data_cfg: DataConfig) -> None:
    """The environment observes and pays on the clean validation split: refuse data without one."""
    if data_cfg.val_size < 1:
        raise ConfigError("val_size", "a LAW episode observes and rewards the target on the clean validation "
                                      "split; give --val-size > 0 (e.g. 1000)")


def plain_info(info: dict) -> dict:
    """An info dict without tensors or arrays (lists instead), so it pickles small and saves as JSON."""
    return {k: (v.tolist() if isinstance(v, (np.ndarray, torch.Tensor)) else v) for k, v in info.items()}


def _finite_or_none(value: float) -> Optional[float]:
    # NaN (a class or noise group absent from the stage) becomes None: NaN != NaN
    # would make identical infos compare unequal.
    return value if math.isfinite(value) else None


class StageWeightingEnv(gym.Env):
    """One 3SM stage of paired target/reference training per step; reward = DNR."""

    metadata = {"render_modes": []}

    def __init__(self, env_cfg: Optional[EnvConfig] = None, data_cfg: Optional[DataConfig] = None,
                 optim_cfg: Optional[OptimConfig] = None, device: torch.device | str = "cpu",
                 train_reference: bool = True, warm_up_cache: int = 0,
                 share_with: Optional["StageWeightingEnv"] = None):
        self.cfg = env_cfg or EnvConfig()
        self.data_cfg = data_cfg or DataConfig()
        self.optim_cfg = optim_cfg or OptimConfig()
        for config in (self.cfg, self.data_cfg, self.optim_cfg):
            config.validate()
        self.schedule = self.cfg.schedule
        require_validation(self.data_cfg)
        self.device = torch.device(device)
        self.train_reference = train_reference
        # A worker's episodes run on sibling envs that share one copy of the data and one warm-up cache.
        if share_with is not None and (share_with.cfg, share_with.data_cfg, share_with.device) != (
                self.cfg, self.data_cfg, self.device):
            raise LawError("an env shares the data of another env of the same configs and device only")
        self.bundle = share_with.bundle if share_with is not None else load_data(
            self.data_cfg, seed=self.cfg.data_seed, device=self.device)
        self.steps_per_epoch = self.bundle.train_stream(self.cfg.data_seed).steps_per_epoch
        self.steps_per_stage = self.cfg.steps_per_stage or max(
            1, round(self.cfg.epochs_per_stage * self.steps_per_epoch))
        self.total_epochs = self.cfg.num_stages * self.steps_per_stage / self.steps_per_epoch

        self.observation_space = gym.spaces.Box(
            low=np.zeros(3, dtype=np.float32),
            high=np.array([self.cfg.num_stages, self.cfg.loss_clip, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.cfg.action_dim,), dtype=np.float32)

        self.weighter = LAWPolicyWeighter(self.bundle.class_counts)
        self.trainer: Optional[PairedTrainer] = None
        self.stage = 0
        self.observer = StageObserver(self.cfg.smoothing, self.cfg.loss_clip)
        self._gap = 0.0
        # The warm-up is unweighted, so it too depends on the episode seed alone: the states it
        # ends in are kept for the last `warm_up_cache` seeds (a search reusing its seeds).
        self.warm_up_cache = warm_up_cache
        self._warm_ups: dict[int, dict] = share_with._warm_ups if share_with is not None else {}
        self._twin: Optional[dict] = None  # the cached reference of this episode, if given
        self._twin_log: Optional[dict] = None  # the reference being recorded, if trained
        self.sample_log: Optional[SampleWeightsLog] = None
        """Set before ``reset`` to receive every sample's loss and weight after each stage, warm-up
        included (``--export-weights``; a single run, so not with ``warm_up_cache``)."""

    # ------------------------------------------------------------------ schedule

    def stage_lr(self, stage: int) -> float:
        return self.schedule.lr_at(self.optim_cfg.lr, stage)

    def reward_weight(self, epoch: float) -> float:
        return self.cfg.reward_scale * math.exp(self.cfg.reward_k * epoch / self.total_epochs)

    # ------------------------------------------------------------------ gymnasium API

    @property
    def acting_stages(self) -> int:
        """Stages the agent acts on (those after the warm-up)."""
        return self.schedule.acting_stages

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        """New episode: identical fresh networks, warm-up stages trained unweighted.

        ``options={"twin": record}`` reuses the reference of an earlier episode of
        this seed (see the module docstring) instead of training it.
        """
        return run_alone(self.reset_requests(seed=seed, options=options))

    def step(self, action):
        return run_alone(self.step_requests(action))

    # ------------------------------------------------------------------ the same, as requests

    def reset_requests(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> Requests:
        """:meth:`reset` in generator form: yields the training it needs (``law.paired.StageTraining``)
        instead of running it, so that a worker can train several episodes' stages as one stack."""
        super().reset(seed=seed)
        twin = (options or {}).get("twin")
        if twin is not None and not (len(twin.get("val_accuracy", ())) == len(twin.get("train_loss", ()))
                                     == self.acting_stages):
            raise LawError(f"a twin record holds the reference's val_accuracy and train_loss after each of "
                           f"the {self.acting_stages} acting stages; got {twin}")
        self._twin = twin
        train_reference = self.train_reference and twin is None
        self._twin_log = {"val_accuracy": [], "train_loss": []} if train_reference else None
        # Every torch seed of the episode derives from the gymnasium RNG, so
        # reset(seed=s) replays the episode exactly and reset() continues the sequence.
        episode_seed = int(self.np_random.integers(2**31 - 1))
        if self.sample_log is not None and self.warm_up_cache:
            raise LawError("a sample log records one run's every stage; a cached warm-up trains none")
        self.trainer = PairedTrainer(
            self.bundle, self.cfg.model, self.optim_cfg, episode_seed, self.device, self.total_epochs,
            amp_dtype=torch.bfloat16 if self.cfg.amp and self.device.type == "cuda" else None,
            keep_weights=self.cfg.keep_weights, train_reference=train_reference,
            sample_stats=self.sample_log is not None)
        self._gap = 0.0  # the pair is identical until the agent acts
        cached = self._warm_ups.get(episode_seed)
        if cached is not None:
            self.trainer.restore_warm_up(cached["trainer"])
            self.observer.restore(cached["smoothed"])
            info = dict(cached["info"])
        else:
            info = yield from self._warm_up()
            if self.warm_up_cache and self.cfg.warmup_stages:
                self._warm_ups[episode_seed] = {"trainer": self.trainer.warm_up_state(), "info": info,
                                                "smoothed": self.observer.state()}
                while len(self._warm_ups) > self.warm_up_cache:
                    self._warm_ups.pop(next(iter(self._warm_ups)))  # the oldest
        self.stage = self.cfg.warmup_stages
        return self.observer.observation(self.stage), info

    def _warm_up(self) -> Requests:
        self.observer.reset()
        info: dict[str, Any] = {}
        for stage in range(self.cfg.warmup_stages):
            self.trainer.set_lr(self.stage_lr(stage))
            self.trainer.reset_stats()
            yield StageTraining(self.trainer, self.steps_per_stage)
            summary = self.trainer.stage_summary(f"warm-up stage {stage}")
            if self.sample_log is not None:  # the twin is a copy of the target until the agent acts
                self.sample_log.add_stage(stage, self.trainer.stats,
                                          self.trainer.stats if self.trainer.reference is not None else None)
            accuracy = self.trainer.evaluate_target("val")["accuracy"]
            self.observer.observe(summary["target_loss"], accuracy)
            info = {"stage": stage, "epoch": self.trainer.epoch, "lr": self.trainer.lr,
                    "acc_target": accuracy, "loss_target": summary["target_loss"]}
        return info

    def step_requests(self, action) -> Requests:
        """:meth:`step` in generator form (see :meth:`reset_requests`)."""
        if self.trainer is None:
            raise LawError("call reset() before step()")
        if self.stage >= self.cfg.num_stages:
            raise LawError("the episode is over (all stages trained); call reset()")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (self.cfg.action_dim,) or not np.all(np.isfinite(action)):
            raise LawError(f"an action is {self.cfg.action_dim} finite numbers in [-1, 1] (theta of "
                           f"{', '.join(self.cfg.features)}, then b), got {action}")
        theta = self.cfg.theta(action)
        self.weighter.set_action(theta)

        trainer = self.trainer
        trainer.set_lr(self.stage_lr(self.stage))
        trainer.reset_stats()
        yield StageTraining(trainer, self.steps_per_stage, self.weighter)
        summary = trainer.stage_summary(f"stage {self.stage}")
        if self.sample_log is not None:
            self.sample_log.add_stage(self.stage, trainer.stats,
                                      trainer.reference_stats if trainer.reference is not None else None)
        target, reference = trainer.evaluate("val")  # the clean validation split; never test
        self.observer.observe(summary["target_loss"], target["accuracy"])

        acc_reference, loss_reference = self._reference_metrics(reference, summary["reference_loss"])
        reward_weight = self.reward_weight(trainer.epoch)
        gap = target["accuracy"] - acc_reference if acc_reference is not None else 0.0
        reward = reward_weight * (gap - self._gap if self.cfg.reward == "change" else gap)
        self._gap = gap
        info = {
            "stage": self.stage,
            "epoch": trainer.epoch,
            "lr": trainer.lr,
            "theta": theta.tolist(),
            "reward_weight": reward_weight,
            "acc_target": target["accuracy"],
            "acc_reference": acc_reference,
            "loss_target": summary["target_loss"],
            "loss_reference": loss_reference,
            "loss_gap": summary["target_loss"] - loss_reference,
            "mean_weight": summary["mean_weight"],
            "mean_weight_per_class": [_finite_or_none(w) for w in summary["mean_weight_per_class"]],
            "mean_weight_noisy": _finite_or_none(summary["mean_weight_noisy"]),
            "mean_weight_clean": _finite_or_none(summary["mean_weight_clean"]),
            "effective_sample_fraction": summary["effective_sample_fraction"],
        }
        if self.cfg.keep_weights:
            info["weights"] = trainer.stage_weights().numpy()
        self.stage += 1
        terminated = self.stage >= self.cfg.num_stages
        if terminated and self._twin_log is not None:
            info["twin"] = self._twin_log
        return self.observer.observation(self.stage), float(reward), terminated, False, info

    def close(self) -> None:
        self.trainer = None

    # ------------------------------------------------------------------ helpers

    def _reference_metrics(self, reference: Optional[dict], loss: float) -> tuple[Optional[float], float]:
        """The reference's validation accuracy and training loss of the stage just trained:
        from the twin record, from the reference trained alongside (and recorded), or none."""
        if self._twin is not None:
            k = self.stage - self.cfg.warmup_stages
            return self._twin["val_accuracy"][k], self._twin["train_loss"][k]
        if reference is None:
            return None, float("nan")
        self._twin_log["val_accuracy"].append(reference["accuracy"])
        self._twin_log["train_loss"].append(loss)
        return reference["accuracy"], loss

    @property
    def recorded_twin(self) -> Optional[dict]:
        """The reference's record of the episode just ended, if it trained one (the twin cache's entry)."""
        ended = self.trainer is not None and self.stage >= self.cfg.num_stages
        return self._twin_log if ended else None

    def evaluate_test(self) -> tuple[dict, Optional[dict]]:
        """Test-split metrics of (target, reference); reference is None if it is not trained
        (``train_reference=False``, or a twin record stood in for it)."""
        if self.trainer is None:
            raise LawError("call reset() before evaluate_test()")
        return self.trainer.evaluate("test")
