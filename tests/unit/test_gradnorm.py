"""Multi-task loss weighting: GradNorm, equal weights and DT4ECG's printed rule.

The toy problem: a shared linear trunk and two regression heads. Task 0 is an exact linear
function of the input (easy, its loss falls fast); task 1 is a saturating function plus
unit-variance noise (its loss cannot fall below the noise, so it trains "slower" in
GradNorm's sense: a larger L_i(t)/L_i(0)).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from ecg_pipeline.training.weighting import (
    EqualWeighting,
    GradNorm,
    LossWeighting,
    PaperRule,
    build_weighting,
)

NAMES = ("equal", "gradnorm", "paper")


class TwoTask(nn.Module):
    """Shared trunk (its weight is the 'last shared parameter') and one head per task."""

    def __init__(self, d_in: int = 8, d_hidden: int = 16, n_tasks: int = 2) -> None:
        super().__init__()
        self.trunk = nn.Linear(d_in, d_hidden)
        self.heads = nn.ModuleList(nn.Linear(d_hidden, 1) for _ in range(n_tasks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = torch.relu(self.trunk(x))
        return [head(h) for head in self.heads]


def make_data(seed: int, n: int = 512, d: int = 8, n_tasks: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    targets = [x @ torch.randn(d, 1, generator=g)]  # task 0: easy, exact
    for _ in range(1, n_tasks):  # task 1 (and more): saturating + noise, slower
        v = torch.randn(d, 1, generator=g)
        targets.append(torch.tanh(2 * x @ v) + torch.randn(n, 1, generator=g))
    return x, targets


def task_losses(model: TwoTask, x, targets, idx=None) -> torch.Tensor:
    if idx is not None:
        x, targets = x[idx], [t[idx] for t in targets]
    preds = model(x)
    return torch.stack([((p - t) ** 2).mean() for p, t in zip(preds, targets)])


def train(weighting: LossWeighting, steps: int, seed: int = 0, n_tasks: int = 2):
    """Train the toy model; return the weight history and the last losses (detached)."""
    torch.manual_seed(seed)
    model = TwoTask(n_tasks=n_tasks)
    x, targets = make_data(seed, n_tasks=n_tasks)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(seed + 1)
    history, losses = [], None
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        losses = task_losses(model, x, targets, idx)
        total = weighting.step(losses, model.trunk.weight)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        history.append(weighting.weights)
    return torch.stack(history), losses.detach()


def fixed_losses(scale0: float = 1.0, seed: int = 0):
    """A frozen model and full batch: the same losses (and gradient norms) at every call."""
    torch.manual_seed(seed)
    model = TwoTask()
    x, targets = make_data(seed)

    def make() -> torch.Tensor:
        losses = task_losses(model, x, targets)
        return losses * torch.tensor([scale0, 1.0])

    return model, make


def grad_norms(losses: torch.Tensor, shared: nn.Parameter) -> torch.Tensor:
    """Independent reference for ||dL_i/dW||."""
    return torch.stack(
        [torch.autograd.grad(loss, shared, retain_graph=True)[0].norm() for loss in losses]
    ).detach()


# --------------------------------------------------------------------------- interface


@pytest.mark.parametrize("name", NAMES)
def test_build_gives_the_protocol_with_ones(name):
    w = build_weighting(name, 2)
    assert isinstance(w, LossWeighting)
    assert w.n_tasks == 2
    assert torch.equal(w.weights, torch.ones(2))


def test_build_rejects_unknown_name_and_bad_parameters():
    with pytest.raises(ValueError, match="unknown loss weighting"):
        build_weighting("uncertainty", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_weighting("gradnorm", 0)
    with pytest.raises(ValueError):
        build_weighting("gradnorm", 2, lr=0.0)


@pytest.mark.parametrize("name", NAMES)
def test_step_rejects_wrong_number_of_losses(name):
    model, make = fixed_losses()
    w = build_weighting(name, 3)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        w.step(make(), model.trunk.weight)


@pytest.mark.parametrize("name", NAMES)
def test_weights_is_a_detached_copy(name):
    model, make = fixed_losses()
    w = build_weighting(name, 2)
    w.step(make(), model.trunk.weight)
    before = w.weights
    assert not before.requires_grad
    before.mul_(0)
    assert w.weights.sum().item() == pytest.approx(2.0, abs=1e-5)


# --------------------------------------------------------------------------- equal


def test_equal_keeps_ones_and_sums_the_losses():
    model, make = fixed_losses()
    w = build_weighting("equal", 2)
    losses = make()
    total = w.step(losses, model.trunk.weight)
    assert torch.equal(total, losses.sum())
    history, _ = train(build_weighting("equal", 2), steps=20)
    assert torch.equal(history, torch.ones(20, 2))


# --------------------------------------------------------------------------- GradNorm


def test_gradnorm_moves_weight_to_the_slower_task():
    w = build_weighting("gradnorm", 2)
    history, last = train(w, steps=100)
    # Task 1 is the slower one by GradNorm's own measure (larger loss ratio).
    ratio = last / w.initial_losses
    assert ratio[1] > 2 * ratio[0]
    assert history[-1, 1] > 1.5 and history[-1, 0] < 0.5
    # Renormalised every step, never negative (floored at min_weight before renormalising).
    torch.testing.assert_close(history.sum(dim=1), torch.full((100,), 2.0))
    assert history.min() > 0


def test_gradnorm_first_step_is_exact():
    # At t = 0, r_i = 1 so target_i = mean(G) and dL_grad/dw_i = sign(G_i - mean G) * g_i;
    # Adam's first step moves each weight by lr against that sign. The task with the
    # larger gradient norm loses weight.
    model, make = fixed_losses(scale0=10.0)
    losses = make()
    norms = grad_norms(losses, model.trunk.weight)
    assert norms[0] > norms[1]
    w = build_weighting("gradnorm", 2, lr=0.025)
    w.step(losses, model.trunk.weight)
    torch.testing.assert_close(w.weights, torch.tensor([0.975, 1.025]), rtol=0, atol=1e-6)
    torch.testing.assert_close(w.initial_losses, losses.detach())
    torch.testing.assert_close(w.last_grad_norms, norms)


def _reference_gradnorm(n_steps: int, alpha: float, lr: float, seed: int = 0):
    """Textbook GradNorm: G_i from autograd.grad(w_i L_i, W, create_graph=True)."""
    torch.manual_seed(seed)
    model = TwoTask()
    x, targets = make_data(seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    w = nn.Parameter(torch.ones(2))
    w_opt = torch.optim.Adam([w], lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    l0, history = None, []
    for _ in range(n_steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        losses = task_losses(model, x, targets, idx)
        if l0 is None:
            l0 = losses.detach()
        weighted = w * losses
        G = torch.stack(
            [
                torch.autograd.grad(
                    weighted[i], model.trunk.weight, retain_graph=True, create_graph=True
                )[0].norm()
                for i in range(2)
            ]
        )
        ratio = losses.detach() / l0
        r = ratio / ratio.mean()
        target = (G.mean() * r**alpha).detach()
        grad_loss = (G - target).abs().sum()
        w_opt.zero_grad()
        (w.grad,) = torch.autograd.grad(grad_loss, w, retain_graph=True)
        total = (w.detach().clone() * losses).sum()
        opt.zero_grad()
        total.backward()
        opt.step()
        w_opt.step()
        with torch.no_grad():
            w.clamp_(min=1e-3)
            w.mul_(2 / w.sum())
        history.append(w.detach().clone())
    return torch.stack(history)


def test_gradnorm_matches_the_create_graph_formulation():
    # The implementation uses G_i = w_i * ||dL_i/dW|| with the norm detached (no double
    # backward); the whole trajectory must match the textbook second-order version.
    ours, _ = train(build_weighting("gradnorm", 2, alpha=1.5, lr=0.025), steps=30)
    reference = _reference_gradnorm(30, alpha=1.5, lr=0.025)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_model_gets_exactly_the_gradient_of_the_detached_weighted_sum(name):
    torch.manual_seed(0)
    model = TwoTask()
    x, targets = make_data(0)
    weighting = build_weighting(name, 2)
    for _ in range(5):  # move the weights away from 1 first
        weighting.step(task_losses(model, x, targets), model.trunk.weight)
    twin = copy.deepcopy(model)

    w_before = weighting.weights
    total = weighting.step(task_losses(model, x, targets), model.trunk.weight)
    total.backward()

    manual = (w_before * task_losses(twin, x, targets)).sum()
    manual.backward()
    torch.testing.assert_close(total.detach(), manual.detach(), rtol=1e-6, atol=0)
    for (pname, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9, msg=pname)
    if name != "equal":
        assert not torch.equal(w_before, torch.ones(2))


@pytest.mark.parametrize("name", ("gradnorm", "paper"))
def test_weight_update_does_not_leak_into_the_model(name):
    model, make = fixed_losses()
    weighting = build_weighting(name, 2)
    weighting.step(make(), model.trunk.weight)
    losses = make()
    total = weighting.step(losses, model.trunk.weight)
    # step() measured gradients but wrote no .grad on the model ...
    assert all(p.grad is None for p in model.parameters())
    # ... and the total loss has no path to the learnable weights.
    if isinstance(weighting, GradNorm):
        grad_w_before = weighting._w.grad.clone()
        assert torch.autograd.grad(total, weighting._w, retain_graph=True, allow_unused=True) == (
            None,
        )
        total.backward()
        assert torch.equal(weighting._w.grad, grad_w_before)


# --------------------------------------------------------------------------- paper rule


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_paper_rule_as_printed_collapses(n_tasks):
    alpha = 2.0
    w = build_weighting("paper", n_tasks, alpha=alpha, renormalise=False)
    history, _ = train(w, steps=25, n_tasks=n_tasks)
    history = torch.cat([torch.ones(1, n_tasks), history]).double()
    # Every weight strictly decreases at every step ...
    assert (history[1:] < history[:-1]).all()
    # ... and since the shares sum to 1 the product shrinks by exp(-alpha (n - 1)) per step.
    log_prod = history.log().sum(dim=1)
    torch.testing.assert_close(
        log_prod.diff(),
        torch.full((25,), -alpha * (n_tasks - 1), dtype=torch.double),
        rtol=1e-5,
        atol=1e-5,  # float32 weights
    )
    assert history[-1].sum() < 0.5  # the total loss (and learning signal) is going away


def test_paper_rule_renormalised_is_a_softmax_of_the_cumulative_shares():
    alpha = 2.0
    torch.manual_seed(0)
    model = TwoTask()
    x, targets = make_data(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    w = build_weighting("paper", 2, alpha=alpha)
    cumulative = torch.zeros(2)
    for _ in range(15):
        losses = task_losses(model, x, targets)
        norms = grad_norms(losses, model.trunk.weight)
        cumulative += norms / norms.sum()
        total = w.step(losses, model.trunk.weight)
        opt.zero_grad()
        total.backward()
        opt.step()
        # Closed form: w(t) = n * softmax(alpha * sum_s share(s)).
        torch.testing.assert_close(w.weights, 2 * torch.softmax(alpha * cumulative, 0))
        assert w.weights.sum().item() == pytest.approx(2.0, abs=1e-5)


def test_paper_rule_favours_the_larger_gradient_and_gradnorm_the_other():
    # Same frozen problem, task 0's loss x10 (so its gradient norm is the larger one).
    model, make = fixed_losses(scale0=10.0)
    norms = grad_norms(make(), model.trunk.weight)
    share = norms / norms.sum()
    assert share[0] > 0.5

    paper, gn = build_weighting("paper", 2), build_weighting("gradnorm", 2, alpha=2.0)
    paper_hist, gn_hist = [], []
    for _ in range(30):
        paper.step(make(), model.trunk.weight)
        gn.step(make(), model.trunk.weight)
        paper_hist.append(paper.weights)
        gn_hist.append(gn.weights)
    paper_hist, gn_hist = torch.stack(paper_hist), torch.stack(gn_hist)

    # Paper rule: w0 rises monotonically, the ratio grows by exp(alpha (s0 - s1)) per step,
    # no restoring force: the other task's weight goes to ~0.
    # (w0 reaches 2.0 to float32 precision within a few steps, hence >= after three.)
    rises = paper_hist[:, 0].diff()
    assert (rises[:3] > 0).all() and (rises >= 0).all()
    log_ratio = (paper_hist[:, 0] / paper_hist[:, 1]).log()
    torch.testing.assert_close(
        log_ratio.diff(),
        torch.full((29,), 2.0 * (share[0] - share[1]).item()),
        rtol=1e-4,
        atol=1e-4,
    )
    assert paper_hist[-1, 1] < 1e-4
    # GradNorm equalises w_i * g_i instead: it lowers the dominant task's weight.
    assert gn_hist[-1, 0] < 1.0 < gn_hist[-1, 1]


def test_paper_rule_leaves_weights_alone_when_no_gradient_reaches_w():
    model, make = fixed_losses()
    unrelated = nn.Parameter(torch.ones(3))
    w = build_weighting("paper", 2)
    w.step(make(), unrelated)
    assert torch.equal(w.weights, torch.ones(2))


# --------------------------------------------------------------------------- one task


@pytest.mark.parametrize("name", NAMES)
def test_single_task_is_weight_one_and_no_gradient_work(name, monkeypatch):
    torch.manual_seed(0)
    model = TwoTask(n_tasks=1)
    x, targets = make_data(0, n_tasks=1)

    def forbidden(*args, **kwargs):
        raise AssertionError("no gradient work expected for one task")

    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    w = build_weighting(name, 1)
    for _ in range(3):
        losses = task_losses(model, x, targets)
        total = w.step(losses, model.trunk.weight)
        assert torch.equal(total, losses[0])
        total.backward()
    assert torch.equal(w.weights, torch.ones(1))


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_with_weights_only_load(name, tmp_path):
    model, make = fixed_losses(scale0=3.0)
    a = build_weighting(name, 2)
    for _ in range(5):
        a.step(make(), model.trunk.weight)
    state = a.state_dict()
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    torch.save(state, tmp_path / "w.pt")
    loaded = torch.load(tmp_path / "w.pt", weights_only=True)

    b = build_weighting(name, 2)
    b.load_state_dict(loaded)
    assert torch.equal(a.weights, b.weights)
    assert b.num_steps == 5
    fresh = build_weighting(name, 2)
    for _ in range(5):  # continuing gives the same trajectory: L(0), Adam moments restored
        a.step(make(), model.trunk.weight)
        b.step(make(), model.trunk.weight)
        fresh.step(make(), model.trunk.weight)
        assert torch.equal(a.weights, b.weights)
    if name == "gradnorm":
        torch.testing.assert_close(b.initial_losses, a.initial_losses)
    if name != "equal":  # the comparison is sensitive: a fresh strategy ends elsewhere
        assert not torch.allclose(fresh.weights, a.weights)


def test_load_state_dict_rejects_another_number_of_tasks():
    for name in NAMES:
        with pytest.raises(ValueError, match="expected \\(3,\\)"):
            build_weighting(name, 3).load_state_dict(build_weighting(name, 2).state_dict())


def test_gradnorm_state_before_the_first_step_round_trips(tmp_path):
    a = build_weighting("gradnorm", 2)
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b = build_weighting("gradnorm", 2)
    b.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert b.initial_losses is None
    h_a, _ = train(a, steps=5)
    h_b, _ = train(b, steps=5)
    assert torch.equal(h_a, h_b)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name):
    h1, _ = train(build_weighting(name, 2), steps=30, seed=3)
    h2, _ = train(build_weighting(name, 2), steps=30, seed=3)
    assert torch.equal(h1, h2)


# --------------------------------------------------------------------------- a conv net


def test_gradnorm_on_a_conv_net_with_batchnorm():
    # The graph is retained across the per-task gradients, so a model with BatchNorm in
    # training mode still takes its single backward afterwards.
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv1d(3, 8, 7, padding=3),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Conv1d(8, 8, 5, padding=2),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
    )
    heads = nn.ModuleList([nn.Linear(8, 15), nn.Linear(8, 3)])
    params = [*backbone.parameters(), *heads.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    weighting = build_weighting("gradnorm", 2)
    x = torch.randn(16, 3, 300)
    y = [torch.randint(0, 15, (16,)), torch.randint(0, 3, (16,))]
    for _ in range(3):
        h = backbone(x)
        losses = torch.stack([nn.functional.cross_entropy(head(h), t) for head, t in zip(heads, y)])
        total = weighting.step(losses, backbone[3].weight)
        opt.zero_grad()
        total.backward()
        opt.step()
        assert all(p.grad is not None for p in params)
    assert weighting.weights.sum().item() == pytest.approx(2.0, abs=1e-5)
    assert math.isfinite(weighting.last_grad_loss.item())


def test_classes_are_exported():
    assert isinstance(build_weighting("equal", 2), EqualWeighting)
    assert isinstance(build_weighting("gradnorm", 2), GradNorm)
    assert isinstance(build_weighting("paper", 2), PaperRule)
