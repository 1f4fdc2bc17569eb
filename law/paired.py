"""Paired target/reference training: what the duplicate-network reward stands on.

The reward of a stage is ``acc(target) - acc(reference)``. For that difference
to measure the weighting policy and nothing else, the two networks must differ
*only* in the weights: same initial parameters (the reference is a deep copy
of the freshly seeded target), the same batch tensor (so the same samples,
order and augmentation), the same optimiser and learning rate. Only the
target's loss is weighted; the reference always trains with plain CE.

Hence the guarantee the tests pin: with weights identically 1 (``theta = 0,
b = 0``) both networks take bit-identical steps and stay equal, so the reward
of "doing nothing" is exactly 0. On CPU that holds as is; on CUDA only with
cuDNN's deterministic kernels, which a pair on a GPU therefore switches on.
(Models with dropout would draw different masks for the two networks and break
this; none of the registered CIFAR models use dropout by default.)

Statistics of a stage (losses, weights by class and by the known noise mask)
accumulate on the device; ``stage_summary`` is the one host sync per stage.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Generator, Optional, Sequence

import torch
from torch import nn

from law.data import DataBundle
from law.errors import LawError
from law.models import build_model
from law.stacked import StackMember, run_stacked_steps
from law.stats import WeightStats
from law.timing import phase
from law.trainer import DivergenceGuard, Learner, OptimConfig, evaluate, make_optimizer, run_steps, set_lr
from law.weighting import Weighter


def identical_networks(a: nn.Module, b: nn.Module) -> bool:
    """True when every parameter and buffer of ``a`` equals ``b``'s bit for bit."""
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def exact_cuda_kernels() -> None:
    """Make cuDNN run deterministic kernels in this process (and stop it benchmarking others).

    Its default backward kernels may accumulate in any order, so on a GPU two identical
    networks fed identical batches drift apart from the first step and a policy that does
    nothing earns a random reward (measured: docs/design.md, "Exact pairs on CUDA").
    """
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


class PairedTrainer:
    """Target and reference networks, their optimisers and the batch stream they share."""

    def __init__(self, bundle: DataBundle, model_name: str, optim_cfg: OptimConfig, seed: int,
                 device: torch.device | str, total_epochs: float,
                 amp_dtype: torch.dtype | None = None, keep_weights: bool = False,
                 train_reference: bool = True, sample_stats: bool = False):
        self.bundle = bundle
        self.device = torch.device(device)
        if self.device.type == "cuda":
            exact_cuda_kernels()
        self.total_epochs = total_epochs
        self.amp_dtype = amp_dtype
        # Seed the initialisation without disturbing the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.target = build_model(model_name, bundle.num_classes, bundle.in_channels, bundle.image_size,
                                      self.device)
        self.target_optimizer = make_optimizer(self.target, optim_cfg)
        # Without a reference (``law apply --no-reference``) only the target trains.
        self.reference = copy.deepcopy(self.target) if train_reference else None
        self.reference_optimizer = make_optimizer(self.reference, optim_cfg) if train_reference else None
        self.stream = bundle.train_stream(seed)
        self.uniform = Weighter()
        self.noise_mask = bundle.train.noise_mask.to(self.device)
        # sample_stats: each training sample's loss and weight too (sample_weights.csv)
        per_sample = len(bundle.train) if sample_stats else 0
        self.stats = WeightStats(bundle.num_classes, self.device, keep_weights, num_samples=per_sample)
        self.reference_stats = WeightStats(bundle.num_classes, self.device, keep_weights=False,
                                           num_samples=per_sample)
        self.guard = DivergenceGuard(self.device)
        self.step = 0
        self.paired_steps = 0

    @property
    def epoch(self) -> float:
        return self.step / self.stream.steps_per_epoch

    @property
    def lr(self) -> float:
        return self.target_optimizer.param_groups[0]["lr"]

    def set_lr(self, lr: float) -> None:
        set_lr(self.target_optimizer, lr)
        if self.reference_optimizer is not None:
            set_lr(self.reference_optimizer, lr)

    def _run(self, learners: list[Learner], steps: int) -> None:
        self.step = run_steps(learners, self.stream, steps, start_step=self.step,
                              steps_per_epoch=self.stream.steps_per_epoch, total_epochs=self.total_epochs,
                              noise_mask=self.noise_mask, guard=self.guard, amp_dtype=self.amp_dtype)

    def paired_learners(self, weighter: Weighter) -> list[Learner]:
        """The networks a paired step trains: the target with ``weighter``, its twin (if any) with CE."""
        learners = [Learner(self.target, self.target_optimizer, weighter, self.stats)]
        if self.reference is not None:
            learners.append(Learner(self.reference, self.reference_optimizer, self.uniform, self.reference_stats,
                                    role="twin"))
        return learners

    def warm_up_learners(self) -> list[Learner]:
        """The network the warm-up trains: the target alone, unweighted (see :meth:`warm_up`)."""
        if self.paired_steps:
            raise LawError("warm_up() must come before the first paired step: it overwrites the reference")
        return [Learner(self.target, self.target_optimizer, self.uniform, self.stats, role="warm-up")]

    def train_steps(self, steps: int, weighter: Weighter) -> None:
        """``steps`` paired steps with ``weighter`` on the target; statistics stay on the device."""
        self._run(self.paired_learners(weighter), steps)
        self.paired_steps += steps

    def warm_up(self, steps: int) -> None:
        """Unweighted steps of the target alone, then copy it into the reference.

        Both networks would take the very same unweighted steps, so training one
        and copying it is bit-for-bit what training both gives, at half the cost.
        Only valid before the first paired step, while the two are still equal.
        """
        self._run(self.warm_up_learners(), steps)
        self.copy_target_into_reference()

    def copy_target_into_reference(self) -> None:
        """The end of a warm-up: the reference becomes the target, parameters and momentum."""
        if self.reference is None:
            return
        self.reference.load_state_dict(self.target.state_dict())
        # deepcopy: load_state_dict keeps the very tensors it is given, and the two
        # optimisers must not share momentum buffers.
        self.reference_optimizer.load_state_dict(copy.deepcopy(self.target_optimizer.state_dict()))

    def warm_up_state(self) -> dict:
        """What the warm-up produced (the target, its optimiser, the stream position), to
        :meth:`restore_warm_up` a later trainer of the same seed instead of training again."""
        if self.paired_steps:
            raise LawError("warm_up_state() is the state right after the warm-up, before any paired step")
        return {"target": {k: v.clone() for k, v in self.target.state_dict().items()},
                "optimizer": copy.deepcopy(self.target_optimizer.state_dict()), "step": self.step}

    def restore_warm_up(self, state: dict) -> None:
        """Be exactly where :meth:`warm_up` of the same seed left its trainer (bit for bit)."""
        if self.step or self.paired_steps:
            raise LawError("restore_warm_up() needs a fresh trainer")
        self.target.load_state_dict(state["target"])
        self.target_optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.step = state["step"]
        self.stream = self.bundle.train_stream(self.stream.seed, start_step=self.step)
        if self.reference is not None:
            self.reference.load_state_dict(self.target.state_dict())
            self.reference_optimizer.load_state_dict(copy.deepcopy(self.target_optimizer.state_dict()))

    def reset_stats(self) -> None:
        self.stats.reset()
        self.reference_stats.reset()

    def stage_summary(self, where: str = "stage") -> dict:
        """Host-side statistics since ``reset_stats``. This is the stage's sync point.

        Raises TrainingDiverged if either network's loss went NaN/inf.
        """
        self.guard.check(where)
        summary = self.stats.summary()
        # NaN without a reference, and in the warm-up, where only the target trains.
        reference_loss = self.reference_stats.summary()["mean_loss"]
        return {
            "target_loss": summary["mean_loss"],
            "reference_loss": reference_loss,
            "loss_gap": summary["mean_loss"] - reference_loss,
            "mean_weight": summary["mean_weight"],
            "mean_weight_per_class": summary["mean_weight_per_class"],
            "mean_weight_noisy": summary["mean_weight_noisy"],
            "mean_weight_clean": summary["mean_weight_clean"],
            "effective_sample_fraction": summary["effective_sample_fraction"],
            "samples": summary["samples"],
        }

    def stage_weights(self) -> torch.Tensor:
        """Every target weight since ``reset_stats`` (needs ``keep_weights=True``), for histograms."""
        return self.stats.all_weights()

    def evaluate_target(self, split: str = "val") -> dict:
        """Metrics of the target on ``split``."""
        with phase(f"{split} evaluation"):
            return evaluate(self.target, self.bundle.eval_batches(split), self.bundle.num_classes)

    def evaluate(self, split: str = "val") -> tuple[dict, Optional[dict]]:
        """Metrics of (target, reference) on ``split``; reference is None if not trained."""
        reference = None
        if self.reference is not None:
            with phase(f"{split} evaluation"):
                reference = evaluate(self.reference, self.bundle.eval_batches(split), self.bundle.num_classes)
        return self.evaluate_target(split), reference

    def identical(self) -> bool:
        """Whether target and reference are still bit-for-bit the same network."""
        return self.reference is not None and identical_networks(self.target, self.reference)

    def state(self) -> dict:
        """Where training is, for logging."""
        return {"step": self.step, "epoch": self.epoch, "lr": self.lr}


@dataclass
class StageTraining:
    """Steps a paired trainer is to take: its target (weighted) with its twin, or, with no
    weighter, the unweighted warm-up. What an environment's stage asks for; run alone, or
    stacked with other episodes' (:func:`train_together`)."""

    trainer: PairedTrainer
    steps: int
    weighter: Optional[Weighter] = None

    def run(self) -> None:
        if self.weighter is None:
            self.trainer.warm_up(self.steps)
        else:
            self.trainer.train_steps(self.steps, self.weighter)

    def learners(self) -> list[Learner]:
        trainer = self.trainer
        return trainer.warm_up_learners() if self.weighter is None else trainer.paired_learners(self.weighter)


def train_together(requests: Sequence[StageTraining]) -> None:
    """Run several trainers' requests as one stack of networks (``law.stacked``).

    What each trainer ends in does not depend on the others it was stacked with (the stack's
    kernels are the same for every width), so episodes vectorised in any grouping compute
    the same. The trainers must share data, step, step count and learning rate.
    """
    first = requests[0].trainer
    for request in requests:
        trainer = request.trainer
        if (trainer.bundle is not first.bundle or trainer.step != first.step or trainer.lr != first.lr
                or request.steps != requests[0].steps or trainer.amp_dtype != first.amp_dtype):
            raise LawError("trainers stacked together need the same data, step, steps, learning rate and "
                           "precision")
    members = [StackMember(learner, request.trainer.stream, request.trainer.guard)
               for request in requests for learner in request.learners()]
    end = run_stacked_steps(members, requests[0].steps, start_step=first.step,
                            steps_per_epoch=first.stream.steps_per_epoch, total_epochs=first.total_epochs,
                            noise_mask=first.noise_mask, amp_dtype=first.amp_dtype)
    for request in requests:
        request.trainer.step = end
        if request.weighter is None:
            request.trainer.copy_target_into_reference()
        else:
            request.trainer.paired_steps += request.steps


Requests = Generator[StageTraining, None, Any]
"""An environment's reset or step in generator form: yields the training it needs, returns its result."""


def run_alone(requests: Requests) -> Any:
    """Drive one reset or step, training each request as it comes; its result."""
    return run_in_lockstep([requests], stacked=False)[0]


def run_in_lockstep(generators: Sequence[Requests], stacked: bool) -> list:
    """Drive several episodes' requests round by round until each returns; their results.

    ``stacked``: each round's requests that can share a stack (same step, steps and learning
    rate) train as one (:func:`train_together`); else one by one, as a lone episode would.
    """
    results: list = [None] * len(generators)
    pending: dict[int, StageTraining] = {}

    def advance(i: int) -> None:
        try:
            pending[i] = next(generators[i])
        except StopIteration as stop:
            pending.pop(i, None)
            results[i] = stop.value

    for i in range(len(generators)):
        advance(i)
    while pending:
        round_ = list(pending.items())
        if stacked:
            groups: dict[tuple, list[StageTraining]] = {}
            for _, request in round_:
                key = (request.trainer.step, request.steps, request.trainer.lr)
                groups.setdefault(key, []).append(request)
            for group in groups.values():
                train_together(group)
        else:
            for _, request in round_:
                request.run()
        for i, _ in round_:
            advance(i)
    return results
