"""Multi-task loss weighting: GradNorm, equal weights, and DT4ECG's simplified rule.

One module (over 400 lines) so that the three strategies, which share one interface and the
gradient-norm helper, are read and compared side by side; most of its length is the maths.

DT4ECG trains one network on two tasks (identity, activity) with the total loss
``sum_i w_i * L_i``. The strategies here choose the ``w_i``; all share one interface
(:class:`LossWeighting`), built by :func:`build_weighting`.

How the total loss and the weight update interleave
---------------------------------------------------
One training step, whatever the strategy::

    losses = torch.stack([loss_identity, loss_activity])   # (n_tasks,), with graph
    total = weighting.step(losses, shared=model.shared_layer())
    optimizer.zero_grad()
    total.backward()          # the one and only backward pass through the whole model
    optimizer.step()
    history.append(weighting.weights)                      # detached copy, for logging

Inside ``step`` (for the gradient-based strategies):

1. The weights ``w(t)`` of this step are read; the returned total is
   ``sum_i w_i(t).detach() * L_i``, so the model's gradient is exactly
   ``sum_i w_i(t) * dL_i/dtheta`` and nothing of the weight update reaches the model.
2. The per-task gradient norms ``||dL_i/dW||`` on the one shared parameter ``W`` are taken
   with ``torch.autograd.grad(L_i, W, retain_graph=True)``. Asking for the gradient of ``W``
   alone means autograd only walks the part of the graph between the losses and ``W`` (the
   heads and whatever sits above ``W``), not the whole backbone; ``retain_graph`` keeps the
   graph alive for the caller's ``total.backward()``; and no ``.grad`` of any model
   parameter is written, so calling ``step`` before or after ``optimizer.zero_grad()`` is
   the same.
3. The weights are updated to ``w(t+1)`` from those norms; they take effect next step.

Using ``w(t)`` (not ``w(t+1)``) for the model loss follows Chen et al.'s Algorithm 1, where
the gradients for the network and for the weights are both taken at time ``t`` and then
both parameters are updated. The paper's rule uses the same convention so that the two are
comparable.

The strategies
--------------
``equal``
    ``w_i = 1``: the baseline without balancing.
``gradnorm``
    Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
    Multitask Networks", ICML 2018: learnable weights, updated by Adam on
    ``L_grad = sum_i |G_i - mean(G) * r_i**alpha|``. See :class:`GradNorm`.
``paper``
    DT4ECG's Algorithm 1 as printed: ``w_i <- w_i * exp(alpha * (g_i / sum_j g_j - 1))``,
    renormalised by default because as printed every weight decays to 0. See
    :class:`PaperRule`.

For one task every strategy is ``w = 1`` and does no gradient work.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol, runtime_checkable

import torch

from ecg_pipeline.config import TrainingSettings

# The defaults of the tuned numbers below are [training]'s (one source of truth).
_DEFAULTS = TrainingSettings()

__all__ = [
    "LossWeighting",
    "EqualWeighting",
    "GradNorm",
    "PaperRule",
    "build_weighting",
    "shared_grad_norms",
]

WeightingName = Literal["gradnorm", "equal", "paper"]


@runtime_checkable
class LossWeighting(Protocol):
    """What a training loop needs from a loss-weighting strategy.

    Attributes
    ----------
    n_tasks : int
        Number of task losses expected by :meth:`step`.
    weights : torch.Tensor
        The current weights, shape (n_tasks,): a detached copy, safe to keep for a history.
    """

    n_tasks: int

    @property
    def weights(self) -> torch.Tensor: ...

    def step(self, losses: torch.Tensor, shared: torch.nn.Parameter) -> torch.Tensor:
        """Return the total loss to backpropagate and update the weights.

        Parameters
        ----------
        losses : torch.Tensor
            Per-task losses of this batch, shape (n_tasks,), still attached to the graph.
        shared : torch.nn.Parameter
            The last shared parameter (e.g. the weight of the backbone's last layer), on
            which the gradient-based strategies measure per-task gradient norms.

        Returns
        -------
        torch.Tensor
            Scalar ``sum_i w_i * L_i`` with ``w`` detached; call ``.backward()`` on it once.
            Call ``step`` once per training step, before ``optimizer.step()``.
        """
        ...

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        """``sum_i w_i * L_i`` with the current weights and no update (e.g. for validation)."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, so a checkpoint loads with ``torch.load(..., weights_only=True)``."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...


def shared_grad_norms(losses: torch.Tensor, shared: torch.nn.Parameter) -> torch.Tensor:
    """Per-task gradient norms ``||dL_i/dW||`` on one shared parameter, detached.

    Parameters
    ----------
    losses : torch.Tensor
        Shape (n_tasks,), attached to the graph.
    shared : torch.nn.Parameter
        ``W``; must require grad.

    Returns
    -------
    torch.Tensor
        Shape (n_tasks,), float32 or the losses' dtype, no graph. A task whose loss does not
        depend on ``W`` gets 0.

    Notes
    -----
    One partial backward per task, each restricted to ``W`` (see the module docstring);
    ``retain_graph=True`` because the caller backpropagates the total loss afterwards. The
    gradients are not kept with ``create_graph``: every use here needs the norm as a number
    only (GradNorm's dependence on ``w_i`` is handled exactly without it, see
    :class:`GradNorm`).
    """
    if not shared.requires_grad:
        raise ValueError("the shared parameter must require grad")
    norms = []
    for i in range(losses.shape[0]):
        (grad,) = torch.autograd.grad(losses[i], shared, retain_graph=True, allow_unused=True)
        if grad is None:  # this task's loss never touches W
            norms.append(torch.zeros((), dtype=losses.dtype, device=losses.device))
        else:
            norms.append(torch.linalg.vector_norm(grad).to(losses.dtype))
    return torch.stack(norms).detach()


class _Base:
    """Shape checks, the weighted sum and the step counter shared by all strategies."""

    def __init__(self, n_tasks: int) -> None:
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        self.n_tasks = int(n_tasks)
        # An int here; state_dict saves it as a tensor so checkpoints stay tensors-only.
        self.num_steps = 0

    @property
    def weights(self) -> torch.Tensor:
        return self._current().detach().clone()

    def _current(self) -> torch.Tensor:
        raise NotImplementedError

    def _check(self, losses: torch.Tensor) -> None:
        if losses.shape != (self.n_tasks,):
            raise ValueError(
                f"expected losses of shape ({self.n_tasks},), got {tuple(losses.shape)}"
            )

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        self._check(losses)
        if self.n_tasks == 1:
            return losses[0]
        # A copy, not a detached view: autograd saves w for the backward of w * L, and the
        # in-place weight update later in step() would otherwise invalidate it.
        w = self._current().detach().to(device=losses.device, dtype=losses.dtype, copy=True)
        return (w * losses).sum()

    def _load_steps(self, state: dict[str, torch.Tensor]) -> None:
        self.num_steps = int(state["num_steps"].item())

    def _check_weights_shape(self, w: torch.Tensor) -> None:
        if w.shape != (self.n_tasks,):
            raise ValueError(
                f"checkpoint has weights of shape {tuple(w.shape)}, expected ({self.n_tasks},)"
            )


class EqualWeighting(_Base):
    """``w_i = 1`` for every task, always: the unbalanced baseline.

    Parameters
    ----------
    n_tasks : int
        Number of tasks.
    """

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)
        self._w = torch.ones(self.n_tasks)

    def _current(self) -> torch.Tensor:
        return self._w

    def step(self, losses: torch.Tensor, shared: torch.nn.Parameter) -> torch.Tensor:
        """Return ``sum_i L_i``; ``shared`` is unused (the signature is the common one)."""
        total = self.combine(losses)
        self.num_steps += 1
        return total

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weights": self._w.clone(), "num_steps": torch.tensor(self.num_steps)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._check_weights_shape(state["weights"])
        self._load_steps(state)


class GradNorm(_Base):
    """GradNorm (Chen et al., ICML 2018): learn the weights so tasks train at similar rates.

    At each step, with ``W`` the last shared parameter:

    - ``G_i = ||d(w_i L_i)/dW||`` and ``mean(G)`` over tasks;
    - ``L_i(0)`` is recorded at the first step; ``r_i = (L_i/L_i(0)) / mean_j(L_j/L_j(0))``
      is the relative inverse training rate (> 1 for a task that has learnt less);
    - ``target_i = mean(G) * r_i**alpha``, treated as a constant;
    - ``L_grad = sum_i |G_i - target_i|`` is minimised with respect to ``w`` only, by Adam;
    - then the weights are floored at ``min_weight`` and rescaled to ``sum_i w_i = n_tasks``.

    So a task that lags behind (large ``r_i``) gets a larger gradient target and its weight
    rises; a task whose gradient already dominates ``W`` gets a smaller weight.

    Parameters
    ----------
    n_tasks : int
        Number of tasks.
    alpha : float, default 2.0
        Asymmetry: how strongly to pull slower tasks. 2.0 is DT4ECG's value; Chen et al.
        used about 0.12 to 1.5 for their experiments. ``alpha = 0`` only equalises ``G_i``.
    lr : float, default 0.025
        Adam learning rate of the weights (their own optimiser, separate from the model's).
        Chen et al. do not state a single value that we could confirm; 0.025 is kept
        because, with Adam, a weight moves by about ``lr`` per step whatever the scale of
        ``L_grad`` (which depends on the loss and the layer), so the weights can change by
        order 1 within ~40 steps yet not jump within one noisy batch. DT4ECG runs 50 epochs
        of batch 16, i.e. thousands of steps.
    min_weight : float, default 1e-3
        Floor applied before renormalising. Adam's step does not know that weights must be
        positive; a weight that crossed 0 would flip the sign of its task's loss. The
        floor keeps every weight strictly positive (after renormalising the floor can shrink
        by at most a factor ``n_tasks / sum``, still > 0).
    betas : tuple of float, default (0.9, 0.999)
        Adam's betas for the weights.

    Notes
    -----
    **No second-order graph.** ``w_i`` is a scalar outside the network, so
    ``G_i = ||d(w_i L_i)/dW|| = w_i * ||dL_i/dW||`` exactly (``w_i > 0`` by the floor), and
    ``dL_grad/dw_i = sign(G_i - target_i) * ||dL_i/dW||``. Computing ``G_i`` as
    ``w_i * norm_i`` with the norm detached gives the same gradient for ``w`` as the usual
    ``autograd.grad(w_i * L_i, W, create_graph=True)`` formulation (a test checks this), but
    builds no double-backward graph through the network, and ``L_grad`` cannot reach the
    model's parameters by construction.

    **Cost.** One restricted backward from each ``L_i`` to ``W`` (``n_tasks`` of them) on
    top of the model's own backward, plus an O(n_tasks) update.
    """

    def __init__(
        self,
        n_tasks: int,
        *,
        alpha: float = _DEFAULTS.gradnorm_alpha,
        lr: float = _DEFAULTS.gradnorm_lr,
        min_weight: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        super().__init__(n_tasks)
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 < min_weight < 1:
            raise ValueError(f"min_weight must be in (0, 1), got {min_weight}")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.min_weight = float(min_weight)
        self._w = torch.nn.Parameter(torch.ones(self.n_tasks))
        self._opt = torch.optim.Adam([self._w], lr=self.lr, betas=betas)
        self.initial_losses: torch.Tensor | None = None
        # For logging: L_grad and the raw norms ||dL_i/dW|| of the last step.
        self.last_grad_loss: torch.Tensor | None = None
        self.last_grad_norms: torch.Tensor | None = None

    def _current(self) -> torch.Tensor:
        return self._w

    def _move_to(self, device: torch.device) -> None:
        """Keep the weights and Adam's moments on the losses' device (no per-step copies)."""
        if self._w.device == device:
            return
        self._w.data = self._w.data.to(device)
        for key, value in self._opt.state.get(self._w, {}).items():
            if key != "step" and torch.is_tensor(value):
                self._opt.state[self._w][key] = value.to(device)
        if self.initial_losses is not None:
            self.initial_losses = self.initial_losses.to(device)

    def step(self, losses: torch.Tensor, shared: torch.nn.Parameter) -> torch.Tensor:
        """Return ``sum_i w_i(t).detach() * L_i`` and update the weights to ``w(t+1)``.

        See :class:`LossWeighting.step` for the arguments.
        """
        self._check(losses)
        if self.n_tasks == 1:
            self.num_steps += 1
            return losses[0]
        self._move_to(losses.device)

        # The model's loss uses this step's weights, detached: its gradient is exactly
        # sum_i w_i(t) dL_i/dtheta and the weight update below cannot leak into it.
        total = self.combine(losses)

        loss_now = losses.detach().float()
        if self.initial_losses is None:
            self.initial_losses = loss_now.clone()
        norms = shared_grad_norms(losses, shared).float()

        # Relative inverse training rate. The floors only matter for a loss that is exactly
        # 0 (at the start or everywhere), where the ratio is meaningless anyway.
        tiny = torch.finfo(torch.float32).tiny
        ratio = loss_now / self.initial_losses.clamp_min(tiny)
        r = ratio / ratio.mean().clamp_min(tiny)

        grad_norms = self._w * norms  # G_i = w_i ||dL_i/dW||, differentiable in w only
        target = (grad_norms.mean() * r.pow(self.alpha)).detach()  # a constant, as in the paper
        grad_loss = (grad_norms - target).abs().sum()

        self._opt.zero_grad(set_to_none=True)
        (self._w.grad,) = torch.autograd.grad(grad_loss, self._w)
        self._opt.step()
        with torch.no_grad():
            # Renormalise so that sum w = n_tasks: decouples the weights' scale from the
            # model's learning rate (Chen et al., section 3.2).
            self._w.clamp_(min=self.min_weight)
            self._w.mul_(self.n_tasks / self._w.sum())

        self.last_grad_loss = grad_loss.detach()
        self.last_grad_norms = norms
        self.num_steps += 1
        return total

    def state_dict(self) -> dict[str, torch.Tensor]:
        adam = self._opt.state.get(self._w, {})
        zeros = torch.zeros(self.n_tasks)
        return {
            "weights": self._w.detach().cpu().clone(),
            # Empty until the first step has recorded L_i(0).
            "initial_losses": (
                torch.empty(0) if self.initial_losses is None else self.initial_losses.cpu().clone()
            ),
            "num_steps": torch.tensor(self.num_steps),
            "adam_step": torch.as_tensor(adam.get("step", 0.0), dtype=torch.float32).cpu().clone(),
            "adam_exp_avg": adam.get("exp_avg", zeros).detach().cpu().clone(),
            "adam_exp_avg_sq": adam.get("exp_avg_sq", zeros).detach().cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._check_weights_shape(state["weights"])
        device = self._w.device
        with torch.no_grad():
            self._w.copy_(state["weights"].to(device))
        init = state["initial_losses"]
        self.initial_losses = None if init.numel() == 0 else init.to(device).clone()
        self._opt.state.clear()
        if float(state["adam_step"]) > 0:
            self._opt.state[self._w] = {
                # Adam keeps its step count as a CPU float tensor by default.
                "step": state["adam_step"].clone().float(),
                "exp_avg": state["adam_exp_avg"].to(device).clone(),
                "exp_avg_sq": state["adam_exp_avg_sq"].to(device).clone(),
            }
        self._load_steps(state)


class PaperRule(_Base):
    """DT4ECG's Algorithm 1: ``w_i <- w_i * exp(alpha * (g_i / sum_j g_j - 1))``.

    With ``g_i = ||dL_i/dW||`` on the last shared parameter (the unweighted losses, as
    printed) and ``dw_i = g_i / sum_j g_j``.

    **As printed it is unusable**: for ``n_tasks >= 2`` every ``dw_i < 1`` (whenever another
    task has any gradient), so every weight shrinks at every step; since ``sum_i dw_i = 1``
    the product of the weights shrinks by exactly ``exp(-alpha * (n_tasks - 1))`` per step
    (``e**-2`` for two tasks and ``alpha = 2``), and the total loss, hence the learning
    signal, vanishes within a few dozen steps. ``renormalise=False`` reproduces that.

    **The usable variant** (``renormalise=True``, the default) rescales to
    ``sum_i w_i = n_tasks`` after each update, as GradNorm does. The common factor
    ``exp(-alpha)`` then cancels and the rule becomes multiplicative weights on the gradient
    shares::

        w(t) = n_tasks * softmax(alpha * sum_{s < t} dw(s))

    Note what this does: it moves weight **towards the task with the larger gradient-norm
    share**, and without any restoring force, because ``g_i`` does not involve ``w_i``.
    If one task keeps the larger share, ``w_a / w_b`` grows by ``exp(alpha (dw_a - dw_b))``
    every step and the other task's weight goes to 0 geometrically. That is the opposite
    of GradNorm, which lowers the weight of a task whose (weighted) gradient dominates and
    raises a lagging task's. Use ``gradnorm`` for balancing; ``paper`` exists to reproduce
    and compare.

    Parameters
    ----------
    n_tasks : int
        Number of tasks.
    alpha : float, default 2.0
        DT4ECG's value.
    renormalise : bool, default True
        Rescale to ``sum w = n_tasks`` after each update (usable); ``False`` is the rule as
        printed (collapse).

    Notes
    -----
    The weights are kept as log-weights, so the multiplicative update is an addition. With
    ``renormalise=True`` this means a weight that has become negligible is not rounded to
    an exact 0 from which no multiplicative update could bring it back; the values exposed
    by ``weights`` are the same as multiplying in linear space. If every ``g_i`` is 0
    (nothing reaches ``W``) the shares are undefined and the weights are left unchanged.
    """

    def __init__(
        self, n_tasks: int, *, alpha: float = _DEFAULTS.gradnorm_alpha, renormalise: bool = True
    ) -> None:
        super().__init__(n_tasks)
        self.alpha = float(alpha)
        self.renormalise = bool(renormalise)
        self._log_w = torch.zeros(self.n_tasks)
        self.last_grad_norms: torch.Tensor | None = None

    def _current(self) -> torch.Tensor:
        return self._log_w.exp()

    def step(self, losses: torch.Tensor, shared: torch.nn.Parameter) -> torch.Tensor:
        """Return ``sum_i w_i(t).detach() * L_i`` and apply the rule to get ``w(t+1)``.

        See :class:`LossWeighting.step` for the arguments.
        """
        self._check(losses)
        if self.n_tasks == 1:
            self.num_steps += 1
            return losses[0]
        if self._log_w.device != losses.device:
            self._log_w = self._log_w.to(losses.device)

        total = self.combine(losses)
        norms = shared_grad_norms(losses, shared).float()
        total_norm = norms.sum()
        if total_norm > 0:
            share = norms / total_norm
            self._log_w = self._log_w + self.alpha * (share - 1.0)
            if self.renormalise:
                # log of n * w / sum(w), computed stably.
                self._log_w = self._log_w - torch.logsumexp(self._log_w, 0) + math.log(self.n_tasks)
        self.last_grad_norms = norms
        self.num_steps += 1
        return total

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "weights": self._current().cpu().clone(),
            "log_weights": self._log_w.cpu().clone(),
            "num_steps": torch.tensor(self.num_steps),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._check_weights_shape(state["log_weights"])
        self._log_w = state["log_weights"].to(self._log_w.device).clone().float()
        self._load_steps(state)


def build_weighting(
    name: WeightingName,
    n_tasks: int,
    *,
    alpha: float = _DEFAULTS.gradnorm_alpha,
    lr: float = _DEFAULTS.gradnorm_lr,
    renormalise: bool = True,
    min_weight: float = 1e-3,
) -> LossWeighting:
    """Build a loss-weighting strategy by name.

    Parameters
    ----------
    name : {"gradnorm", "equal", "paper"}
        Strategy; see the module docstring.
    n_tasks : int
        Number of task losses (2 for DT4ECG).
    alpha : float, default ``[training] gradnorm_alpha``
        GradNorm's asymmetry / the paper rule's exponent (DT4ECG uses 2).
    lr : float, default ``[training] gradnorm_lr``
        GradNorm only: Adam learning rate of the weights.
    renormalise : bool, default True
        Paper rule only: rescale to ``sum w = n_tasks`` (``False`` reproduces the collapse).
    min_weight : float, default 1e-3
        GradNorm only: floor on the weights before renormalising.

    Returns
    -------
    LossWeighting
        A fresh strategy with all weights 1.

    Raises
    ------
    ValueError
        Unknown name or invalid parameters.
    """
    if name == "equal":
        return EqualWeighting(n_tasks)
    if name == "gradnorm":
        return GradNorm(n_tasks, alpha=alpha, lr=lr, min_weight=min_weight)
    if name == "paper":
        return PaperRule(n_tasks, alpha=alpha, renormalise=renormalise)
    raise ValueError(f"unknown loss weighting {name!r}; expected 'gradnorm', 'equal' or 'paper'")
