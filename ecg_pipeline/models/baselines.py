"""Table I's comparison backbones: LSTM, MLP, 1-D CNN, MobileNet, EfficientNet, DenseNet.

One file for the family of baselines, as torchvision keeps one file per family (about 400
lines: six small networks with a shape comment per line).

The paper names the families but gives no architectures; these are small 1-D versions of each
(about 30k-250k parameters at C=1, T=300) so that a 2-core CPU trains all of them. Each is a
backbone only (see :mod:`ecg_pipeline.models.multitask` for the contract); the same
:class:`~ecg_pipeline.models.multitask.MultiTaskNet` adds attention, pooling and heads.

All conv backbones use "same" padding (odd kernels) and keep stride 1 in the stem, so a
300-sample window at 100 Hz keeps a time resolution of at least 12.5 Hz in the last map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .attention import SqueezeExcitation

__all__ = [
    "CNN1d",
    "DenseNet1d",
    "EfficientNet1d",
    "InvertedResidual1d",
    "LSTM1d",
    "MLP1d",
    "MobileNet1d",
]


def _conv_bn_act(
    c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """Conv (no bias: BN follows) + BN + activation, "same" padding for odd ``k``."""
    if k % 2 != 1:
        raise ValueError(f"kernel sizes must be odd to keep the length, got {k}")
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm1d(c_out),
        act(),
    )


class LSTM1d(nn.Module):
    """LSTM over time with the C leads as the features of each step; last hidden state out.

    Parameters
    ----------
    in_channels : int
        Leads C (the LSTM's input size).
    hidden_size, num_layers : int
        LSTM size; the output width is ``hidden_size`` (twice that if bidirectional).
    bidirectional : bool
        Also run backwards and concatenate both final states.
    dropout : float
        Dropout between LSTM layers (ignored by PyTorch for one layer).
    downsample : int
        Average-pool the input in time by this factor first (1 = off): fewer sequential steps,
        for speed on CPU with long windows.
    """

    emits_sequence = False

    def __init__(
        self,
        in_channels: int = 1,
        hidden_size: int = 64,
        num_layers: int = 2,
        bidirectional: bool = False,
        dropout: float = 0.0,
        downsample: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.downsample = int(downsample)
        self.lstm = nn.LSTM(
            in_channels,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.n_dir = 2 if bidirectional else 1
        self.out_channels = hidden_size * self.n_dir
        # Input-to-gate weights of the top layer: the last weights all tasks share.
        self.shared_param_name = f"lstm.weight_ih_l{num_layers - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample > 1:
            x = F.avg_pool1d(x, self.downsample, ceil_mode=True)  # (B, C, T / d)
        _, (h_n, _) = self.lstm(x.transpose(1, 2))  # input (B, T, C); h_n (L * D, B, H)
        last = h_n[-self.n_dir :]  # (D, B, H): the top layer, each direction
        return last.transpose(0, 1).reshape(x.shape[0], -1)  # (B, D * H)


class MLP1d(nn.Module):
    """Flatten the (C, T) window and apply Linear-ReLU-Dropout layers.

    Parameters
    ----------
    in_channels, n_samples : int
        C and T; the first layer has C * T inputs, so the model is tied to T.
    hidden : sequence of int
        Widths of the hidden layers; the last one is the feature width.
    dropout : float
        Dropout after each hidden layer.
    """

    emits_sequence = False

    def __init__(
        self,
        in_channels: int = 1,
        n_samples: int = 300,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if not hidden:
            raise ValueError("MLP1d needs at least one hidden layer")
        self.in_channels = int(in_channels)
        self.out_channels = hidden[-1]
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * n_samples
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.layers = nn.Sequential(*layers)
        self.shared_param_name = f"layers.{len(layers) - 3}.weight"  # the last Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, C, T) -> (B, C * T) -> (B, hidden[-1])


class CNN1d(nn.Module):
    """Plain conv stack: [conv-BN-ReLU, max-pool 2] per width, no pool after the last.

    Parameters
    ----------
    in_channels : int
        Leads C.
    channels : sequence of int
        Width of each conv layer.
    kernel_size : int
        Odd conv width.
    """

    emits_sequence = True

    def __init__(
        self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128), kernel_size: int = 7
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        self.in_channels, self.out_channels = int(in_channels), channels[-1]
        layers: list[nn.Module] = []
        width = in_channels
        for i, c in enumerate(channels):
            layers.append(_conv_bn_act(width, c, kernel_size))
            if i < len(channels) - 1:
                layers.append(nn.MaxPool1d(2, ceil_mode=True))
            width = c
        self.layers = nn.Sequential(*layers)
        self.shared_param_name = f"layers.{len(layers) - 1}.0.weight"  # the last conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, C, T) -> (B, channels[-1], T / 2**(n-1))


class InvertedResidual1d(nn.Module):
    """MobileNetV2's inverted residual (and, with ``se=True``, EfficientNet's MBConv) in 1-D.

    1x1 expansion -> depthwise k conv (the stride) -> optional SE -> linear 1x1 projection, with
    the identity added when the shape is kept. The projection has no activation (a "linear
    bottleneck"): a ReLU on the narrow output would discard information.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    stride : int
        Depthwise conv stride.
    expand : int
        Expansion ratio of the hidden width (1 = no expansion conv).
    kernel_size : int
        Odd depthwise conv width.
    se : bool
        Squeeze-excitation on the expanded features, squeezing to ``in_channels / 4``.
    act : type of nn.Module
        Activation (ReLU6 for MobileNet, SiLU for EfficientNet).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand: int,
        kernel_size: int = 5,
        se: bool = False,
        act: type[nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_act(in_channels, hidden, 1, act=act))
        layers.append(_conv_bn_act(hidden, hidden, kernel_size, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcitation(hidden, reduction=4 * expand))
        layers += [nn.Conv1d(hidden, out_channels, 1, bias=False), nn.BatchNorm1d(out_channels)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)  # (B, C_out, T / stride)
        return x + out if self.use_residual else out


class _InvertedResidualNet(nn.Module):
    """Stem conv -> stages of inverted residual blocks -> 1x1 head conv (shared by both nets)."""

    emits_sequence = True

    def __init__(
        self,
        in_channels: int,
        stem_channels: int,
        stages: Sequence[tuple[int, int, int, int, int]],
        head_channels: int,
        se: bool,
        act: type[nn.Module],
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(head_channels)
        # A wide stem kernel at stride 1: one QRS complex spans ~10 samples at 100 Hz.
        self.stem = _conv_bn_act(in_channels, stem_channels, 7, act=act)
        blocks, width = [], stem_channels
        for expand, k, c, n, s in stages:  # each stage: n blocks, the first one strided
            for i in range(n):
                blocks.append(InvertedResidual1d(width, c, s if i == 0 else 1, expand, k, se, act))
                width = c
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn_act(width, head_channels, 1, act=act)
        self.shared_param_name = "head.0.weight"  # the 1x1 head conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, stem, T)
        x = self.blocks(x)  # (B, c_last, T / 8)
        return self.head(x)  # (B, head_channels, T / 8)


class MobileNet1d(_InvertedResidualNet):
    """A small 1-D MobileNetV2: ReLU6, depthwise-separable inverted residual blocks.

    Parameters
    ----------
    in_channels : int
        Leads C.
    kernel_size : int
        Odd depthwise kernel width (5 by default: cheap in 1-D, and wider context than 3).
    head_channels : int
        Width of the final 1x1 conv (the feature width).
    """

    # (expand, out channels, blocks, first stride); the kernel is ``kernel_size`` throughout.
    STAGES = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 2), (4, 96, 1, 1))

    def __init__(
        self, in_channels: int = 1, kernel_size: int = 5, head_channels: int = 128
    ) -> None:
        stages = [(t, kernel_size, c, n, s) for t, c, n, s in self.STAGES]
        super().__init__(in_channels, 16, stages, head_channels, se=False, act=nn.ReLU6)


class EfficientNet1d(_InvertedResidualNet):
    """A small 1-D EfficientNet-B0-like net: MBConv blocks with SE and SiLU, mixed 3/5 kernels.

    Parameters
    ----------
    in_channels : int
        Leads C.
    head_channels : int
        Width of the final 1x1 conv (the feature width).
    """

    # (expand, kernel, out channels, blocks, first stride), B0's pattern scaled down.
    STAGES = (
        (1, 3, 16, 1, 1),
        (4, 5, 24, 2, 2),
        (4, 5, 40, 2, 2),
        (4, 3, 64, 2, 2),
        (4, 5, 96, 1, 1),
    )

    def __init__(self, in_channels: int = 1, head_channels: int = 128) -> None:
        super().__init__(in_channels, 16, self.STAGES, head_channels, se=True, act=nn.SiLU)


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bottleneck) -> BN-ReLU-k conv producing ``growth`` new channels."""

    def __init__(self, in_channels: int, growth: int, bn_size: int, kernel_size: int) -> None:
        super().__init__()
        mid = bn_size * growth
        self.norm1 = nn.BatchNorm1d(in_channels)
        self.conv1 = nn.Conv1d(in_channels, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm1d(mid)
        self.conv2 = nn.Conv1d(mid, growth, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))  # (B, bn_size * growth, T)
        return self.conv2(F.relu(self.norm2(h)))  # (B, growth, T)


class _DenseBlock(nn.Module):
    """Each layer sees the concatenation of the block input and all earlier layers' outputs."""

    def __init__(self, in_channels: int, n_layers: int, growth: int, bn_size: int, k: int):
        super().__init__()
        self.layers = nn.ModuleList(
            _DenseLayer(in_channels + i * growth, growth, bn_size, k) for i in range(n_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)  # (B, C + growth, T)
        return x


class DenseNet1d(nn.Module):
    """A small 1-D DenseNet-BC: stem conv, dense blocks, transitions (1x1 conv + avg-pool 2).

    Parameters
    ----------
    in_channels : int
        Leads C.
    block_layers : sequence of int
        Dense layers per block.
    growth_rate : int
        Channels each dense layer adds.
    stem_channels : int
        Width of the stem conv.
    bn_size : int
        Bottleneck width factor (1x1 conv to ``bn_size * growth_rate``).
    kernel_size : int
        Odd width of the stem and dense-layer convs.
    compression : float
        Transition width factor (DenseNet-BC's theta).
    """

    emits_sequence = True

    def __init__(
        self,
        in_channels: int = 1,
        block_layers: Sequence[int] = (4, 4, 4),
        growth_rate: int = 16,
        stem_channels: int = 32,
        bn_size: int = 4,
        kernel_size: int = 7,
        compression: float = 0.5,
    ) -> None:
        super().__init__()
        if not block_layers or min(block_layers) < 1:
            raise ValueError(f"block_layers must be non-empty and >= 1 each, got {block_layers}")
        self.in_channels = int(in_channels)
        self.stem = _conv_bn_act(in_channels, stem_channels, kernel_size)
        stages: list[nn.Module] = []
        width = stem_channels
        for i, n in enumerate(block_layers):
            stages.append(_DenseBlock(width, n, growth_rate, bn_size, kernel_size))
            width += n * growth_rate
            if i < len(block_layers) - 1:
                out = int(width * compression)
                stages.append(
                    nn.Sequential(
                        nn.BatchNorm1d(width),
                        nn.ReLU(),
                        nn.Conv1d(width, out, 1, bias=False),
                        nn.AvgPool1d(2, ceil_mode=True),
                    )
                )
                width = out
        self.stages = nn.Sequential(*stages)
        # Pre-activation layers end un-normalised; the final BN-ReLU is DenseNet's usual close.
        self.final = nn.Sequential(nn.BatchNorm1d(width), nn.ReLU())
        self.out_channels = width
        # The last dense layer's conv: the last conv all tasks pass through.
        self.shared_param_name = (
            f"stages.{len(stages) - 1}.layers.{block_layers[-1] - 1}.conv2.weight"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, stem_channels, T)
        x = self.stages(x)  # (B, width, T / 2**(n_blocks-1))
        return self.final(x)
