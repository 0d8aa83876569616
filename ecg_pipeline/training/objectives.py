"""What the training loop minimises: supervised heads, or a self-supervised pre-training task.

One loop (:func:`ecg_pipeline.training.loop.fit`) trains every model; an objective says what a
batch's losses are and how an epoch is scored on validation. Each objective's losses are its
"tasks" for the loss weighting (GradNorm over the supervised heads; one term, weight 1, for a
pre-training objective).

Pre-training objectives for ECG-SL (labels unused), compared in the README:

``masked_beats``
    Masked-segment modelling: hide a fraction of each window's real beats (their features are
    replaced by a learned mask token; their RR intervals stay, the rhythm is known) and
    reconstruct the hidden beats' segments from the others through the temporal model. Mean
    squared error over hidden beats, in the windows' normalised units.
``contrastive``
    Two random views of every window's beat sequence (beat dropout, amplitude scaling, noise,
    an offset, RR jitter); SimCLR's NT-Xent pulls the two views of one window together and
    pushes the other windows of the batch away.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn

OBJECTIVES = ("masked_beats", "contrastive")


class Supervised:
    """Cross-entropy per head; validation accuracy per head, averaged into ``val_score``."""

    def __init__(self, labels: Mapping[str, torch.Tensor], label_smoothing: float = 0.0):
        self.labels = dict(labels)
        self.tasks = list(labels)
        self.smoothing = label_smoothing

    def modules(self) -> list[nn.Module]:
        return []

    def shared_layer(self, model: nn.Module) -> nn.Parameter:
        return model.shared_layer()

    def batch(self, model, x: torch.Tensor, idx: torch.Tensor, generator) -> tuple:
        """(losses (n_tasks,), {task: correct count}) of one batch of rows ``idx``."""
        out = model(x)
        losses = torch.stack(
            [
                nn.functional.cross_entropy(
                    out[t], self.labels[t][idx], label_smoothing=self.smoothing
                )
                for t in self.tasks
            ]
        )
        with torch.no_grad():
            correct = {t: int((out[t].argmax(1) == self.labels[t][idx]).sum()) for t in self.tasks}
        return losses, correct

    @torch.no_grad()
    def validate(self, model, x: torch.Tensor, idx: torch.Tensor) -> dict:
        from ecg_pipeline.training.loop import predict_logits

        logits = predict_logits(model, x)
        row = {}
        for task, lg in logits.items():
            y = self.labels[task][idx]
            row[f"{task}_val_loss"] = float(nn.functional.cross_entropy(lg, y))
            row[f"{task}_val_acc"] = float((lg.argmax(1) == y).float().mean())
        row["val_score"] = float(np.mean([row[f"{t}_val_acc"] for t in self.tasks]))
        return row


def _real(x: torch.Tensor) -> torch.Tensor:
    return x[..., -1] > 0.5  # (B, K): the beat mask column


class MaskedBeats:
    """Masked-segment modelling over an :class:`~ecg_pipeline.models.ecg_sl.ECGSLBackbone`."""

    tasks = ["masked_beats"]

    def __init__(self, backbone: nn.Module, mask_fraction: float = 0.3):
        from ecg_pipeline.models.ecg_sl import SegmentDecoder

        self.mask_fraction = mask_fraction
        self.decoder = SegmentDecoder(backbone.out_channels, backbone.segment_samples)

    def modules(self) -> list[nn.Module]:
        return [self.decoder]

    def shared_layer(self, backbone: nn.Module) -> nn.Parameter:
        return backbone.fuse.weight

    def _hide(self, real: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Hide a fraction of each window's real beats, at least one where it has two or more
        # (a window of one beat has no context to infer it from).
        draw = torch.rand(real.shape, generator=generator).to(real.device)
        hide = real & (draw < self.mask_fraction)
        n_real = real.sum(dim=1)
        pick = torch.argmax(torch.where(real, draw, -1.0), dim=1)  # one random real beat
        rows = torch.arange(len(real), device=real.device)
        has_context = n_real >= 2
        none = has_context & (hide.sum(dim=1) == 0)
        hide[rows[none], pick[none]] = True
        every = has_context & (hide.sum(dim=1) == n_real)
        hide[rows[every], pick[every]] = False
        hide[~has_context] = False
        return hide

    def _loss(self, backbone, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from ecg_pipeline.models.ecg_sl import split_beat_input

        segments, rr_s, real = split_beat_input(x)
        hide = self._hide(real, generator)
        if not hide.any():
            return (self.decoder(backbone.mask_token) * 0).sum()  # keeps the graph, no signal
        h = backbone.contextualise(backbone.beat_features(segments, real), rr_s, real, hide=hide)
        return nn.functional.mse_loss(self.decoder(h[hide]), segments[hide])

    def batch(self, backbone, x, idx, generator) -> tuple:
        return self._loss(backbone, x, generator).reshape(1), {}

    @torch.no_grad()
    def validate(self, backbone, x: torch.Tensor, idx: torch.Tensor) -> dict:
        backbone.eval()
        generator = torch.Generator().manual_seed(0)  # the same hidden beats every epoch
        losses, weights = [], []
        for start in range(0, len(x), 256):
            part = x[start : start + 256]
            losses.append(float(self._loss(backbone, part, generator)))
            weights.append(len(part))
        loss = float(np.average(losses, weights=weights)) if losses else float("nan")
        return {"masked_beats_val_loss": loss, "val_score": -loss}


class Contrastive:
    """SimCLR over two augmented views of each window's beat sequence."""

    tasks = ["contrastive"]

    def __init__(self, backbone: nn.Module, temperature: float = 0.1, beat_dropout: float = 0.2):
        from ecg_pipeline.models.ecg_sl import ProjectionHead

        self.temperature = temperature
        self.beat_dropout = beat_dropout
        self.projection = ProjectionHead(backbone.out_channels)

    def modules(self) -> list[nn.Module]:
        return [self.projection]

    def shared_layer(self, backbone: nn.Module) -> nn.Parameter:
        return backbone.project[0].weight

    def view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view: drop beats, scale, offset and add noise, jitter RR (B, K, L + 2)."""
        b, k, _ = x.shape

        def rand(*shape):
            return torch.rand(shape, generator=generator).to(x.device)

        real = _real(x)
        keep = real & (rand(b, k) >= self.beat_dropout)
        keep[~keep.any(dim=1)] = real[~keep.any(dim=1)]  # never drop every beat
        segments = x[..., :-2] * (0.8 + 0.4 * rand(b, 1, 1)) + 0.1 * (rand(b, 1, 1) - 0.5)
        segments = segments + 0.02 * torch.randn(segments.shape, generator=generator).to(x.device)
        rr = x[..., -2] * (1 + 0.05 * (rand(b, k) - 0.5))
        # Compact the kept beats to the front (the model expects right padding).
        order = torch.argsort((~keep).float() + torch.arange(k, device=x.device) / (2 * k), dim=1)
        gathered = torch.gather(
            torch.cat([segments, rr.unsqueeze(-1), keep.unsqueeze(-1).float()], dim=-1),
            1,
            order.unsqueeze(-1).expand(-1, -1, x.shape[-1]),
        )
        gathered[..., :-1] = gathered[..., :-1] * gathered[..., -1:]
        return gathered

    def _loss(self, backbone, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z1 = self.projection(backbone(self.view(x, generator)))  # (B, E)
        z2 = self.projection(backbone(self.view(x, generator)))  # (B, E)
        z = torch.cat([z1, z2])  # (2B, E)
        sim = z @ z.T / self.temperature  # (2B, 2B)
        sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
        n = len(z1)
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return nn.functional.cross_entropy(sim, target)

    def batch(self, backbone, x, idx, generator) -> tuple:
        return self._loss(backbone, x, generator).reshape(1), {}

    @torch.no_grad()
    def validate(self, backbone, x: torch.Tensor, idx: torch.Tensor) -> dict:
        backbone.eval()
        generator = torch.Generator().manual_seed(0)
        losses, weights = [], []
        for start in range(0, len(x), 256):
            part = x[start : start + 256]
            if len(part) >= 2:
                losses.append(float(self._loss(backbone, part, generator)))
                weights.append(len(part))
        loss = float(np.average(losses, weights=weights)) if losses else float("nan")
        return {"contrastive_val_loss": loss, "val_score": -loss}


def build_objective(name: str, backbone: nn.Module, **options):
    """A pre-training objective by name (:data:`OBJECTIVES`)."""
    if name == "masked_beats":
        return MaskedBeats(backbone, **options)
    if name == "contrastive":
        return Contrastive(backbone, **options)
    raise ValueError(f"unknown pre-training objective {name!r}; valid: {', '.join(OBJECTIVES)}")


def parameters_of(model: nn.Module, objective) -> Iterator[nn.Parameter]:
    """The model's parameters and the objective's own (a decoder, a projection head)."""
    yield from model.parameters()
    for module in objective.modules():
        yield from module.parameters()
