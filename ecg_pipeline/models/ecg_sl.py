"""ECG-SL: heartbeat-segment learning (Yu, Yang, Sano, arXiv 2310.00818).

The ECG is a sequence of heartbeats. Each beat segment (cut around its R peak at ingest, see
``ecg_pipeline.signal.beats``) goes through one shared 1-D ResNet encoder; a temporal model
(a GRU or a small transformer encoder) reads the sequence of beat features together with each
beat's RR interval; attention pooling over the beats gives one vector per window, and one linear
head per task follows, as in DT4ECG. The paper publishes no code; every choice below is ours
and is documented in the README ("ECG-SL").

Input: one tensor per window so that the training loop, prediction and the exported ``pt2``
program treat both families alike::

    x: (B, K, L + 2)    K beats (padded to max_beats), L segment samples, then two columns:
                        x[..., L]     RR interval before the beat, seconds (0 if unknown)
                        x[..., L + 1] 1 for a real beat, 0 for padding

Self-supervised pre-training uses the same modules (:meth:`ECGSLBackbone.contextualise` with
``hide``, :class:`SegmentDecoder`, :class:`ProjectionHead`); the objectives are training logic
and live in ``ecg_pipeline.training.pretrain``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .dt4ecg import ResNet1d
from .multitask import MultiTaskNet

__all__ = [
    "BEAT_EXTRA_COLUMNS",
    "ECGSL",
    "ECGSLBackbone",
    "ProjectionHead",
    "SegmentDecoder",
    "split_beat_input",
]

# Columns after the L segment samples of each beat (see the module docstring).
BEAT_EXTRA_COLUMNS = ("rr_s", "mask")
TEMPORAL_MODELS = ("gru", "transformer")
SEGMENT_POOLINGS = ("mean", "flatten")


def split_beat_input(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, K, L + 2) -> segments (B, K, L), rr_s (B, K), mask (B, K) bool."""
    if x.dim() != 3 or x.shape[-1] < 3:
        raise ValueError(f"expected beat input (B, K, L + 2), got {tuple(x.shape)}")
    return x[..., :-2], x[..., -2], x[..., -1] > 0.5


def _with_one_position(mask: torch.Tensor) -> torch.Tensor:
    # A window without beats still needs one position to pool over (its features are zeros),
    # or a softmax over nothing gives NaN.
    empty = ~mask.any(dim=1, keepdim=True)  # (B, 1)
    first = torch.zeros_like(mask)
    first[:, 0] = True
    return mask | (empty & first)


class BiGRU(nn.Module):
    """A bidirectional GRU over right-padded sequences that never reads the padding.

    The backward direction runs on each sequence reversed within its own length (a gather,
    which ``torch.export`` keeps), so a window's first beat is not preceded by padded zeros.
    """

    def __init__(self, d_model: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model must be even for a bidirectional GRU, got {d_model}")
        drop = dropout if n_layers > 1 else 0.0
        self.forward_gru = nn.GRU(d_model, d_model // 2, n_layers, batch_first=True, dropout=drop)
        self.backward_gru = nn.GRU(d_model, d_model // 2, n_layers, batch_first=True, dropout=drop)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k = h.shape[1]
        lengths = mask.sum(dim=1, keepdim=True)  # (B, 1)
        steps = torch.arange(k, device=h.device).unsqueeze(0)  # (1, K)
        # Position t of the reversed sequence holds beat len-1-t (padding stays in place).
        rev = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, K)
        rev = rev.unsqueeze(-1).expand(-1, -1, h.shape[-1])
        fwd, _ = self.forward_gru(h)  # (B, K, D/2)
        bwd, _ = self.backward_gru(torch.gather(h, 1, rev))  # (B, K, D/2), reversed order
        bwd = torch.gather(bwd, 1, rev[..., : bwd.shape[-1]])  # back to beat order
        return torch.cat([fwd, bwd], dim=-1)  # (B, K, D)


class AttentionPool(nn.Module):
    """Additive attention over beats: w_k = softmax(v . tanh(W h_k)) over real beats."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
        self.score = nn.Linear(d_model, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)  # (B, K)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)  # (B, K)
        return (weights.unsqueeze(-1) * h).sum(dim=1), weights  # (B, D), (B, K)


class ECGSLBackbone(nn.Module):
    """Beat encoder -> RR fusion -> temporal model -> attention pooling: (B, K, L+2) -> (B, D).

    Parameters
    ----------
    segment_samples : int
        L, samples per beat segment (``[ingest.beats]``).
    max_beats : int
        K, beats per window after padding (the transformer's learned positions need it).
    channels, kernel_size, strides
        The shared beat encoder, a :class:`~ecg_pipeline.models.dt4ecg.ResNet1d`.
    temporal : {"gru", "transformer"}
        The model over the beat sequence.
    d_model : int
        Width of the beat features the temporal model reads and writes.
    n_layers, n_heads : int
        Temporal layers; attention heads (transformer).
    dropout : float
        Dropout inside the temporal model.
    """

    emits_sequence = False

    def __init__(
        self,
        segment_samples: int,
        max_beats: int,
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: int = 7,
        strides: Sequence[int] = (1, 2, 2),
        temporal: str = "gru",
        d_model: int = 64,
        n_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.1,
        segment_pooling: str = "mean",
    ) -> None:
        super().__init__()
        if temporal not in TEMPORAL_MODELS:
            raise ValueError(f"unknown temporal model {temporal!r}; valid: {TEMPORAL_MODELS}")
        if segment_pooling not in SEGMENT_POOLINGS:
            raise ValueError(
                f"unknown segment_pooling {segment_pooling!r}; valid: {SEGMENT_POOLINGS}"
            )
        self.segment_samples, self.max_beats = int(segment_samples), int(max_beats)
        self.in_channels = self.max_beats  # the K axis of the input, for shape checks
        self.temporal_kind = temporal
        self.encoder = ResNet1d(1, channels, kernel_size, strides)
        width = self.encoder.out_channels
        self.flatten = None
        if segment_pooling == "flatten":
            # Beats are aligned on their R peak, so where a feature sits in the segment (P, QRS,
            # T) means something: keep the positions instead of averaging them away.
            with torch.no_grad():
                c, t = self.encoder(torch.zeros(2, 1, self.segment_samples)).shape[1:]
            self.flatten = nn.Linear(c * t, width)
        # Beat features + RR (s) + RR relative to the window's mean + "RR known".
        self.fuse = nn.Linear(width + 3, d_model)
        self.mask_token = nn.Parameter(torch.zeros(d_model))  # stands in for a hidden beat
        if temporal == "gru":
            self.temporal: nn.Module = BiGRU(d_model, n_layers, dropout)
            self.positions = None
        else:
            layer = nn.TransformerEncoderLayer(
                d_model, n_heads, 2 * d_model, dropout, batch_first=True, norm_first=True
            )
            self.temporal = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
            self.positions = nn.Parameter(torch.zeros(self.max_beats, d_model))
            nn.init.normal_(self.positions, std=0.02)
        self.pool = AttentionPool(d_model)
        # One shared layer after pooling: GradNorm's W, which every head's loss reaches even
        # when a window has one beat (then the pooling weights are constant and get no gradient).
        self.project = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU())
        self.out_channels = d_model
        self.shared_param_name = "project.0.weight"

    def beat_features(self, segments: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode each beat on its own: (B, K, L) -> (B, K, C)."""
        b, k, n = segments.shape
        flat = segments.reshape(b * k, 1, n)  # (B*K, 1, L)
        if torch.compiler.is_exporting():
            # An exported program needs static shapes: every slot is encoded (running
            # statistics in eval mode, so a padded slot cannot change a real beat's features).
            feats = self._encode(flat)  # (B*K, C)
        else:
            # Only the real beats (about 4 of 10 slots): padded beats must not enter
            # BatchNorm's batch statistics while training, and encoding them is wasted work.
            keep = mask.reshape(-1)
            feats = flat.new_zeros(b * k, self.encoder.out_channels)
            if keep.any():
                feats[keep] = self._encode(flat[keep])
        return feats.reshape(b, k, -1) * mask.unsqueeze(-1)  # (B, K, C)

    def _encode(self, flat: torch.Tensor) -> torch.Tensor:
        z = self.encoder(flat)  # (N, C, L')
        if self.flatten is None:
            return z.mean(dim=-1)  # (N, C)
        return self.flatten(z.flatten(1))  # (N, C)

    def contextualise(
        self,
        feats: torch.Tensor,
        rr_s: torch.Tensor,
        mask: torch.Tensor,
        hide: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Beat features in context: (B, K, C) -> (B, K, D).

        ``hide`` (B, K) bool replaces those beats by a learned mask token (their RR interval
        is kept: the rhythm is known, the beat's shape is to be inferred) for masked-segment
        pre-training.
        """
        known = ((rr_s > 0) & mask).to(feats.dtype)  # (B, K): padding has no interval
        rr_s = rr_s * known
        n_known = known.sum(dim=1, keepdim=True).clamp(min=1)
        mean_rr = (rr_s * known).sum(dim=1, keepdim=True) / n_known  # (B, 1)
        relative = torch.where(known > 0, rr_s / mean_rr.clamp(min=1e-3) - 1, 0 * rr_s)
        rr = torch.stack([rr_s, relative, known], dim=-1)  # (B, K, 3)
        h = self.fuse(torch.cat([feats, rr], dim=-1))  # (B, K, D)
        if hide is not None:
            h = torch.where(hide.unsqueeze(-1), self.mask_token.expand_as(h), h)
        attend = _with_one_position(mask)
        if self.positions is None:
            h = self.temporal(h, attend)  # (B, K, D)
        else:
            h = h + self.positions[: h.shape[1]]
            h = self.temporal(h, src_key_padding_mask=~attend)  # (B, K, D)
        return h * attend.unsqueeze(-1)

    def pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, L+2) -> window vector (B, D) and each beat's pooling weight (B, K)."""
        segments, rr_s, mask = split_beat_input(x)
        h = self.contextualise(self.beat_features(segments, mask), rr_s, mask)
        return self.pool(h, _with_one_position(mask))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.pooled(x)[0])  # (B, D)


class ECGSL(MultiTaskNet):
    """:class:`ECGSLBackbone` + one linear head per task (the heads of :class:`MultiTaskNet`).

    Parameters
    ----------
    segment_samples, max_beats : int
        L and K of the (B, K, L + 2) input.
    heads : Mapping[str, int]
        Task name -> number of classes.
    shared_param, head_dropout
        As :class:`~ecg_pipeline.models.multitask.MultiTaskNet`.
    **options
        The backbone's (see :class:`ECGSLBackbone`).
    """

    input_kind = "beats"

    def __init__(
        self,
        segment_samples: int,
        max_beats: int,
        heads: Mapping[str, int],
        *,
        shared_param: str | None = None,
        head_dropout: float = 0.0,
        **options,
    ) -> None:
        backbone = ECGSLBackbone(segment_samples, max_beats, **options)
        super().__init__(
            backbone, None, heads, shared_param=shared_param, head_dropout=head_dropout
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, L + 2) -> (B, D): the input of every head."""
        expected = self.backbone.segment_samples + len(BEAT_EXTRA_COLUMNS)
        if x.dim() != 3 or x.shape[-1] != expected:
            raise ValueError(f"expected beat input (B, K, {expected}), got {tuple(x.shape)}")
        return self.backbone(x)

    def beat_weights(self, x: torch.Tensor) -> torch.Tensor:
        """How much each beat weighs in the window's vector: (B, K), zero for padding."""
        return self.backbone.pooled(x)[1]


class SegmentDecoder(nn.Module):
    """Masked-segment pre-training: a beat's context vector -> its segment, (B, K, D) -> (B, K, L)."""

    def __init__(self, d_model: int, segment_samples: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, segment_samples)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class ProjectionHead(nn.Module):
    """Contrastive pre-training: window vector -> unit-norm embedding, (B, D) -> (B, E)."""

    def __init__(self, d_model: int, out_dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, out_dim)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(z), dim=-1)
