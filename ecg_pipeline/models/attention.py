"""Attention modules for 1-D feature maps, pluggable after any convolutional backbone.

Every module here maps a feature map ``x`` of shape (B, C, T) to a tensor of the same shape,
so that the backbone -> attention -> global-average-pooling -> heads chain of
:class:`~ecg_pipeline.models.multitask.MultiTaskNet` works with any of them (DT4ECG, Table III:
backbones x {none, SE, MHA, CBAM, SCA}).

``SCA`` is DT4ECG's Sequence Channel Attention, written exactly as the paper states it::

    alpha = sigmoid(Conv1d_1x1(AvgPool_T(X)))     # (B, C, 1)   channel attention
    X'    = X * alpha
    beta  = sigmoid(FC(AvgPool_C(X')))            # (B, 1, T)   sequence attention
    X_SCA = X' * beta = X * alpha * beta

The FC maps T -> T, so SCA is built for one time length ``seq_len`` (the backbone's output
length for the training window length); :func:`build_attention` is given that length by the
model registry, which measures it with a dry forward pass of the backbone.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ATTENTION_NAMES",
    "CBAM",
    "SCA",
    "SqueezeExcitation",
    "TemporalMHA",
    "build_attention",
]

# "none" first: it is the default of every backbone except dt4ecg.
ATTENTION_NAMES: tuple[str, ...] = ("none", "se", "cbam", "mha", "sca")


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation over channels (Hu et al., 2018).

    ``x * sigmoid(W2 relu(W1 mean_T(x)))``: one gate in (0, 1) per channel and sample.

    Parameters
    ----------
    channels : int
        C of the (B, C, T) input.
    reduction : int
        Bottleneck ratio of the two-layer gate; the hidden width is ``max(1, C // reduction)``.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=-1)  # (B, C): squeeze over time
        g = torch.sigmoid(self.fc2(self.relu(self.fc1(s))))  # (B, C)
        return x * g.unsqueeze(-1)  # (B, C, T)


class CBAM(nn.Module):
    """Convolutional Block Attention Module in 1-D (Woo et al., 2018).

    Channel attention first (a shared MLP on both the average- and the max-pooled descriptor,
    summed), then temporal attention (a k-wide conv over the channel-wise mean and max), both
    sigmoid gates, applied in sequence as in the original.

    Parameters
    ----------
    channels : int
        C of the (B, C, T) input.
    reduction : int
        Bottleneck ratio of the channel MLP.
    kernel_size : int
        Width of the temporal attention conv (odd, so that the length is kept).
    """

    def __init__(self, channels: int, reduction: int = 8, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"CBAM kernel_size must be odd to keep T, got {kernel_size}")
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )
        self.temporal = nn.Conv1d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channel gate: avg and max descriptors see different statistics of each channel.
        ca = torch.sigmoid(self.mlp(x.mean(dim=-1)) + self.mlp(x.amax(dim=-1)))  # (B, C)
        x = x * ca.unsqueeze(-1)  # (B, C, T)
        # Temporal gate from the channel-wise mean and max at each time step.
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        ta = torch.sigmoid(self.temporal(desc))  # (B, 1, T)
        return x * ta  # (B, C, T)


class TemporalMHA(nn.Module):
    """Multi-head self-attention over the time steps of a feature map, with a residual.

    Each time step is a token of dimension C. Pre-norm residual form ``x + MHA(LN(x))``: the
    residual keeps the backbone's features intact at initialisation (so the "none" and "mha"
    ablation rows start from the same function class), and the LayerNorm keeps the attention
    logits in range whatever the scale of the conv features. No positional encoding is added:
    the conv features already carry local temporal context, and the paper does not describe one.

    Parameters
    ----------
    channels : int
        C of the (B, C, T) input (the embedding dimension).
    num_heads : int
        Upper bound on the number of heads; the largest count <= ``num_heads`` dividing C is
        used, because nn.MultiheadAttention needs ``C % heads == 0``.
    dropout : float
        Dropout on the attention weights.
    """

    def __init__(self, channels: int, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        heads = next(h for h in range(max(1, num_heads), 0, -1) if channels % h == 0)
        self.num_heads = heads
        self.norm = nn.LayerNorm(channels)
        self.mha = nn.MultiheadAttention(channels, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.transpose(1, 2)  # (B, T, C)
        q = self.norm(tokens)
        attended, _ = self.mha(q, q, q, need_weights=False)  # (B, T, C)
        return (tokens + attended).transpose(1, 2)  # (B, C, T)


class SCA(nn.Module):
    """DT4ECG's Sequence Channel Attention: ``X * alpha * beta``.

    Parameters
    ----------
    channels : int
        C of the (B, C, T) input.
    seq_len : int
        T of the input. The sequence attention is a fully connected layer T -> T, so the module
        only accepts this length.

    Attributes
    ----------
    channel_conv : nn.Conv1d
        1x1 conv C -> C on the time-averaged descriptor, giving ``alpha``.
    sequence_fc : nn.Linear
        T -> T on the channel-averaged descriptor of ``X * alpha``, giving ``beta``.
    """

    def __init__(self, channels: int, seq_len: int) -> None:
        super().__init__()
        if seq_len < 1:
            raise ValueError(f"SCA needs seq_len >= 1, got {seq_len}")
        self.seq_len = int(seq_len)
        self.channel_conv = nn.Conv1d(channels, channels, kernel_size=1)
        self.sequence_fc = nn.Linear(seq_len, seq_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.seq_len:
            # The FC would fail anyway; say why (a window length other than the one built for).
            raise ValueError(
                f"SCA was built for T={self.seq_len} time steps, got T={x.shape[-1]}; "
                "build the model with the n_samples of the windows it will see"
            )
        alpha = torch.sigmoid(self.channel_conv(x.mean(dim=-1, keepdim=True)))  # (B, C, 1)
        x1 = x * alpha  # (B, C, T)
        # beta is computed from the channel-reweighted map, as in the paper (AvgPool_C(X')).
        beta = torch.sigmoid(self.sequence_fc(x1.mean(dim=1))).unsqueeze(1)  # (B, 1, T)
        return x1 * beta  # (B, C, T) = X * alpha * beta


def build_attention(name: str | None, channels: int, seq_len: int, **options) -> nn.Module:
    """Build the attention module called ``name`` for a (B, channels, seq_len) feature map.

    Parameters
    ----------
    name : str or None
        One of :data:`ATTENTION_NAMES`; ``None`` means ``"none"`` (an ``nn.Identity``).
    channels, seq_len : int
        C and T of the feature map it will see.
    **options
        Passed to the module's constructor (e.g. ``reduction=16`` for "se"/"cbam",
        ``num_heads=8`` for "mha").

    Raises
    ------
    ValueError
        For a name not in :data:`ATTENTION_NAMES`.
    """
    key = "none" if name is None else str(name).lower()
    if key == "none":
        if options:
            raise ValueError(f"attention 'none' takes no options, got {sorted(options)}")
        return nn.Identity()
    if key == "se":
        return SqueezeExcitation(channels, **options)
    if key == "cbam":
        return CBAM(channels, **options)
    if key == "mha":
        return TemporalMHA(channels, **options)
    if key == "sca":
        return SCA(channels, seq_len, **options)
    raise ValueError(f"unknown attention {name!r}; valid: {', '.join(ATTENTION_NAMES)} (or None)")
