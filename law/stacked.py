"""Networks of one architecture trained as one batched model: vectorised episodes.

A worker that runs K episodes at once trains their K targets (and the twins
it must train) as one model: ``torch.func.stack_module_state`` stacks every
network's parameters, batch-norm buffers and momentum, ``vmap`` over
``functional_call`` runs one forward for all of them, each on its own batch,
and one SGD over the stacked tensors updates them all (SGD is elementwise, so
that is each network's own optimiser's update). Each network's loss is its own
weighter's ``mean(w * l)`` and the backward runs on their sum, so each gets
exactly its own loss's gradient.

Exactness: a stack computes each member as a group of grouped convolutions,
the same kernels whatever the stack's width (2 or more) or the member's place
in it, so a member's result does not depend on what it was stacked with and a
target whose weights are all 1 stays bit-identical to its twin. A stack of
one would run the dense kernels instead (another reduction order), so a lone
network is stacked with a throw-away copy of itself. Against training the
networks one by one (``run_steps``) a stack differs in the last bits, from the
first step on (tests/test_stacked.py pins both facts).

A stack lives for one stage: built from the networks' modules and optimisers,
trained, written back. Everything else (evaluation, checkpoints, the warm-up
cache) sees ordinary modules.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from law.errors import LawError
from law.timing import phase
from law.trainer import DivergenceGuard, Learner, StepResult
from law.weighting import Progress, WeightInputs, Weighter, weighted_loss


@dataclass
class StackMember:
    """One network of a stack and where its batches, statistics and divergence flag come from."""

    learner: Learner
    stream: Iterator
    """The batch stream of its episode (a target and its twin share one batch per step)."""
    guard: DivergenceGuard


def check_stackable(model: nn.Module) -> None:
    """Refuse a model whose training draws random numbers (dropout): a stack draws one mask for all
    its members, and a pair's two networks would need the same draw anyway."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            raise LawError(f"{type(model).__name__} has dropout ({name or 'the model'}, p = {module.p}): its "
                           "networks cannot train as one stack; use one episode per worker "
                           "(--episodes-per-worker 1) or a model without dropout")


def stackable(weighter: Weighter) -> bool:
    """Whether a weighter can train inside a stack: it weights from the batch's logits and losses
    (``weights``), never by running the model itself (L2RW's meta-gradient, ``forward``)."""
    return type(weighter).forward is Weighter.forward


class StackedLearners:
    """Learners of one architecture and optimiser settings as one batched model."""

    def __init__(self, learners: Sequence[Learner]):
        if not learners:
            raise LawError("a stack needs at least one network")
        for learner in learners:
            if not stackable(learner.weighter):
                raise LawError(f"the '{learner.weighter.name}' weighter runs the model itself; it cannot "
                               "train in a stack of networks")
        settings = [{k: v for k, v in learner.optimizer.param_groups[0].items() if k != "params"}
                    for learner in learners]
        if any(s != settings[0] for s in settings) or any(len(l.optimizer.param_groups) != 1 for l in learners):
            raise LawError("networks trained in one stack need the same optimiser settings (learning rate "
                           "included)")
        check_stackable(learners[0].model)
        self.learners = list(learners)
        # A stack of one runs other kernels than a wider one: a copy keeps every stack >= 2 wide.
        models = [learner.model for learner in learners]
        self.width = max(2, len(models))
        models += [models[0]] * (self.width - len(models))
        params, buffers = stack_module_state(models)
        self.params = {name: p.detach().clone().requires_grad_() for name, p in params.items()}
        self.buffers = {name: b.clone() for name, b in buffers.items()}
        self.optimizer = torch.optim.SGD(list(self.params.values()), **settings[0])
        self._stack_momentum(models)
        skeleton = copy.deepcopy(models[0]).to("meta")
        # Batch-norm running statistics are stacked buffers, so their in-place updates land in each
        # member's own slice.
        self.forward = vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)))

    def _stack_momentum(self, models: list[nn.Module]) -> None:
        optimizers = [learner.optimizer for learner in self.learners]
        optimizers += [optimizers[0]] * (self.width - len(optimizers))
        buffers = [[opt.state.get(p, {}).get("momentum_buffer") for p in model.parameters()]
                   for opt, model in zip(optimizers, models)]
        held = {b is not None for member in buffers for b in member}
        if held == {True, False}:
            raise LawError("networks trained in one stack must be at the same step (some have momentum, "
                           "some have none)")
        if held == {True}:
            for stacked, *per_member in zip(self.params.values(), *buffers):
                self.optimizer.state[stacked]["momentum_buffer"] = torch.stack(
                    [b.contiguous() for b in per_member])

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, progress: Progress,
             amp_dtype: torch.dtype | None = None) -> list[StepResult]:
        """One weighted SGD step of every member on its own batch, ``inputs`` (members, B, ...)."""
        count = len(self.learners)
        if inputs.shape[0] < self.width:  # the copy trains on its original's batch and is thrown away
            inputs = torch.cat([inputs, inputs[:1].expand(self.width - count, *inputs.shape[1:])])
        with warnings.catch_warnings():
            # vmap's fallback for adaptive pooling's as_strided_ warns on first use; its cost is in the
            # measured figures (README, "Vectorised episodes").
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            with torch.autocast(inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = self.forward(self.params, self.buffers, inputs)
                results, total = [], 0.0
                for k, learner in enumerate(self.learners):
                    losses = learner.weighter.per_sample_loss(logits[k], targets[k])
                    weights = learner.weighter.weights(
                        WeightInputs(logits[k].detach(), targets[k], losses.detach(), progress)).detach()
                    loss = weighted_loss(losses.float(), weights)
                    total = total + loss
                    results.append(StepResult(logits[k].detach(), losses.detach(), weights, loss.detach()))
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
        self.optimizer.step()
        return results

    @torch.no_grad()
    def write_back(self) -> None:
        """Each member's parameters, buffers and momentum back into its own module and optimiser."""
        for k, learner in enumerate(self.learners):
            state = dict(learner.model.named_parameters())
            state.update(learner.model.named_buffers())
            for name, stacked in {**self.params, **self.buffers}.items():
                state[name].copy_(stacked[k])
            for name, stacked in self.params.items():
                momentum = self.optimizer.state.get(stacked, {}).get("momentum_buffer")
                if momentum is None:
                    continue
                own = learner.optimizer.state[state[name]]
                if "momentum_buffer" not in own:  # the stack took the network's first step
                    own["momentum_buffer"] = torch.empty_like(state[name])
                own["momentum_buffer"].copy_(momentum[k])


def run_stacked_steps(members: Sequence[StackMember], steps: int, *, start_step: int, steps_per_epoch: int,
                      total_epochs: float, noise_mask: torch.Tensor,
                      amp_dtype: torch.dtype | None = None) -> int:
    """``run_steps`` for the networks of several episodes at once, as one stack.

    Every member takes ``steps`` steps from ``start_step`` on its stream's batches, at the
    learning rate its optimiser holds (the same for all); losses and weights add into each
    member's statistics and guard, on the device. Members sharing a stream (a target and its
    twin) share each batch. Returns the step count after them.
    """
    stack = StackedLearners([member.learner for member in members])
    streams = list({id(member.stream): member.stream for member in members}.values())
    place = {id(stream): i for i, stream in enumerate(streams)}
    slot = [place[id(member.stream)] for member in members]  # the batch each member trains on
    for step in range(start_step, start_step + steps):
        progress = Progress(step=step, epoch=step / steps_per_epoch, total_epochs=total_epochs)
        with phase("data"):
            batches = [next(stream) for stream in streams]
            inputs = torch.stack([batches[s].inputs for s in slot])
            targets = torch.stack([batches[s].targets for s in slot])
        with phase("sgd stacked"):
            results = stack.step(inputs, targets, progress, amp_dtype)
        for member, s, result in zip(members, slot, results):
            batch = batches[s]
            member.guard.observe(result.loss)
            member.learner.stats.update(result.losses, result.weights, batch.targets,
                                        noise_mask[batch.indices], batch.indices)
    stack.write_back()
    return start_step + steps

