"""Learning to Reweight Examples (Ren et al., ICML 2018), exact and fast.

L2RW weights a training batch by how much a small SGD step on each example
would lower the loss on a clean batch. With per-example weights ``eps`` (all
0), a look-ahead step ``theta_hat = theta - alpha * grad(sum_i eps_i l_i)`` and
the clean loss ``L_c(theta_hat)``::

    u_i = -dL_c(theta_hat)/d eps_i |_{eps=0} = alpha * <grad L_c(theta), grad l_i(theta)>
    w   = max(u, 0) / sum(max(u, 0))        (all zeros if that sum is 0)

and the step minimises ``sum_i w_i l_i`` with ``w`` held constant.

Why no look-ahead copy: at ``eps = 0`` the look-ahead point *is* ``theta``, so
``u_i`` is (``alpha`` times) the directional derivative of ``l_i`` along
``g = grad L_c(theta)``. One backward pass on the clean batch gives ``g``; one
forward-mode pass over the training batch with tangent ``g`` on the
parameters gives every ``<g, grad l_i>`` at once, and its primal is the
training step's own forward (it keeps its reverse-mode graph). The published
PyTorch port instead differentiates through an explicit look-ahead copy:
three forwards and a double backward. ``alpha`` cancels in the normalisation,
so it is not a parameter here.

Cost: clean forward + backward, a forward carrying tangents (about three
forwards' work: each convolution's tangent is two more convolutions) and the
training backward. Torch's generic forward-AD rule for batch norm would add
about ten elementwise passes per layer; ``_TrainModeBatchNorm`` replaces it
with one fused kernel during that pass (see there).

Batch norm stays in whatever mode the model is in (train mode during
training, i.e. batch statistics for both batches, as in the paper). The
clean pass runs on copies of the buffers so the real running statistics move
once per step, on the training batch, exactly as in a plain step.

``lookahead_scores`` / ``lookahead_step`` keep the published formulation as the
reference the tests and the benchmark compare against.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from law.errors import LawError
from law.weighting import MetaBatchFn, Progress, Weighter

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits, targets) -> (B,) per-sample losses."""


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, targets, reduction="none")


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _buffer_copies(model: nn.Module) -> dict[str, torch.Tensor]:
    # Passes that are not the training forward must leave running statistics alone.
    return {name: b.clone() for name, b in model.named_buffers()}


def clean_gradient(model: nn.Module, meta_inputs: torch.Tensor, meta_targets: torch.Tensor,
                   loss_fn: LossFn = _cross_entropy) -> dict[str, torch.Tensor]:
    """``grad_theta`` of the mean clean loss, without touching the model's buffers or ``.grad``."""
    params = _trainable(model)
    logits = functional_call(model, _buffer_copies(model), (meta_inputs,))
    loss = loss_fn(logits, meta_targets).mean()
    grads = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(params, grads))


class _TrainModeBatchNorm(torch.autograd.Function):
    """Train-mode batch norm with a forward-mode rule that costs one fused kernel.

    Torch's generic forward-AD formula for batch norm is a chain of about ten
    elementwise passes over the activation (8x a batch-norm forward here). But
    with batch statistics the Jacobian with respect to the input is
    self-adjoint, ``w * invstd * (I - 11^T/N - xhat xhat^T/N)`` per channel, so
    its Jacobian-vector product is the backward kernel applied to the tangent.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.save_for_forward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, invstd = ctx.saved_tensors
        grads = torch.ops.aten.native_batch_norm_backward(
            grad_out, x, weight, None, None, mean, invstd, True, ctx.eps, list(ctx.needs_input_grad[:3]))
        return (*grads, None, None, None, None)

    @staticmethod
    def jvp(ctx, x_t, weight_t, bias_t, *_):
        x, weight, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out_t = torch.zeros_like(x) if x_t is None else torch.ops.aten.native_batch_norm_backward(
            x_t, x, weight, None, None, mean, invstd, True, ctx.eps, [True, False, False])[0]
        if weight_t is not None:  # + xhat * weight_t, in place on the fresh tangent
            out_t.addcmul_(x - mean.view(shape), (invstd * weight_t).view(shape))
        if bias_t is not None:
            out_t.add_(bias_t.view(shape))
        return out_t


def _batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
                momentum=0.1, eps=1e-5):
    if not training:
        return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    return _TrainModeBatchNorm.apply(input, weight, bias, running_mean, running_var, momentum, eps)


class _FastBatchNormTangents(TorchFunctionMode):
    """Routes ``F.batch_norm`` (every ``nn.BatchNorm*``) through ``_TrainModeBatchNorm``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return (_batch_norm if func is F.batch_norm else func)(*args, **(kwargs or {}))


def forward_with_directional_derivative(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
    direction: dict[str, torch.Tensor], loss_fn: LossFn = _cross_entropy, update_buffers: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward pass returning (logits, losses, <direction, grad l_i> per sample).

    ``logits`` and ``losses`` are ordinary outputs with their reverse-mode graph
    (use them as the training step's forward); the directional derivatives come
    from forward-mode AD in the same pass.
    """
    params = _trainable(model)
    buffers = {} if update_buffers else _buffer_copies(model)
    with fwAD.dual_level(), _FastBatchNormTangents():
        duals = {name: fwAD.make_dual(p, direction[name]) for name, p in params.items()}
        logits = functional_call(model, {**duals, **buffers}, (inputs,))
        losses, slopes = fwAD.unpack_dual(loss_fn(logits, targets))
        logits = fwAD.unpack_dual(logits).primal
    return logits, losses, slopes.detach()


def normalised_positive_part(scores: torch.Tensor) -> torch.Tensor:
    """``max(u, 0) / sum(max(u, 0))``, or all zeros (never NaN) when no score is positive."""
    positive = scores.clamp_min(0)
    # An all-zero numerator divided by a tiny positive number stays exactly zero.
    return positive / positive.sum().clamp_min(torch.finfo(positive.dtype).tiny)


def l2rw_scores(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                meta_inputs: torch.Tensor, meta_targets: torch.Tensor,
                loss_fn: LossFn = _cross_entropy) -> torch.Tensor:
    """``u_i / alpha = -dL_c/d eps_i / alpha``: the unnormalised L2RW scores.

    Leaves the model's parameters, buffers and gradients untouched.
    """
    direction = clean_gradient(model, meta_inputs, meta_targets, loss_fn)
    with torch.no_grad():  # forward-mode AD still runs; no reverse graph is needed here
        _, _, slopes = forward_with_directional_derivative(
            model, inputs, targets, direction, loss_fn, update_buffers=False)
    return slopes


def l2rw_weights(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                 meta_inputs: torch.Tensor, meta_targets: torch.Tensor,
                 loss_fn: LossFn = _cross_entropy) -> torch.Tensor:
    """The (B,) L2RW weights: non-negative, summing to 1 (or all zero)."""
    return normalised_positive_part(l2rw_scores(model, inputs, targets, meta_inputs, meta_targets, loss_fn))


def l2rw_forward(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                 meta_inputs: torch.Tensor, meta_targets: torch.Tensor,
                 loss_fn: LossFn = _cross_entropy) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training forward of an L2RW step: (logits, losses with graph, weights summing to 1)."""
    direction = clean_gradient(model, meta_inputs, meta_targets, loss_fn)
    logits, losses, slopes = forward_with_directional_derivative(model, inputs, targets, direction, loss_fn)
    return logits, losses, normalised_positive_part(slopes)


def l2rw_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
              targets: torch.Tensor, meta_inputs: torch.Tensor, meta_targets: torch.Tensor,
              loss_fn: LossFn = _cross_entropy) -> torch.Tensor:
    """One complete L2RW training step (minimises ``sum_i w_i l_i``); returns the weights ``w``."""
    _, losses, weights = l2rw_forward(model, inputs, targets, meta_inputs, meta_targets, loss_fn)
    optimizer.zero_grad(set_to_none=True)
    (weights * losses).sum().backward()
    optimizer.step()
    return weights


class L2RWWeighter(Weighter):
    """L2RW in the trainer: weights ``B * w`` (mean one), sharing the training forward.

    The trainer sets ``meta_batch`` to a callable returning one clean
    (inputs, targets) batch from the meta set.
    """

    name = "l2rw"
    needs_meta_batch = True

    def __init__(self, meta_batch_fn: Optional[MetaBatchFn] = None) -> None:
        super().__init__()
        self.meta_batch = meta_batch_fn

    def forward(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                progress: Progress) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.meta_batch is None:
            raise LawError("the l2rw method needs a clean meta batch: set weighter.meta_batch "
                           "to a callable returning (inputs, targets) from the meta set")
        meta_inputs, meta_targets = self.meta_batch()
        logits, losses, weights = l2rw_forward(
            model, inputs, targets, meta_inputs, meta_targets, self.per_sample_loss)
        return logits, losses, weights * weights.numel()


# ----------------------------------------------------------------------------------------
# Reference: the published formulation through an explicit look-ahead (slow; for tests
# and the benchmark).


def lookahead_scores(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                     meta_inputs: torch.Tensor, meta_targets: torch.Tensor, alpha: float = 1.0,
                     loss_fn: LossFn = _cross_entropy) -> torch.Tensor:
    """``u = -dL_c(theta_hat(eps))/d eps`` at ``eps = 0``, differentiating through the look-ahead."""
    params = _trainable(model)
    eps = torch.zeros(len(targets), dtype=inputs.dtype, device=inputs.device, requires_grad=True)
    losses = loss_fn(functional_call(model, _buffer_copies(model), (inputs,)), targets)
    grads = torch.autograd.grad((eps * losses).sum(), list(params.values()), create_graph=True)
    lookahead = {name: p - alpha * g for (name, p), g in zip(params.items(), grads)}
    meta_logits = functional_call(model, {**lookahead, **_buffer_copies(model)}, (meta_inputs,))
    meta_loss = loss_fn(meta_logits, meta_targets).mean()
    return -torch.autograd.grad(meta_loss, eps)[0]


def lookahead_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                   targets: torch.Tensor, meta_inputs: torch.Tensor, meta_targets: torch.Tensor,
                   loss_fn: LossFn = _cross_entropy) -> torch.Tensor:
    """The published port's L2RW step: look-ahead weights, then a separate weighted training pass."""
    weights = normalised_positive_part(
        lookahead_scores(model, inputs, targets, meta_inputs, meta_targets, loss_fn=loss_fn).detach())
    losses = loss_fn(model(inputs), targets)
    optimizer.zero_grad(set_to_none=True)
    (weights * losses).sum().backward()
    optimizer.step()
    return weights
