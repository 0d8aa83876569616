"""DT4ECG: a 1-D ResNet backbone, Sequence Channel Attention and one linear head per task.

You et al., "DT4ECG: A Dual-Task Learning Framework for ECG-Based Human Identity Recognition
and Human Activity Detection". The backbone is an initial 1-D convolution followed by three
residual blocks (conv-BN-ReLU, conv-BN, identity or projected shortcut added, ReLU); SCA
(:class:`~ecg_pipeline.models.attention.SCA`) reweights the final (B, C, T) map; global
average pooling and two heads (identity, activity) follow. GradNorm balancing is training
logic and lives in ``ecg_pipeline.training``; :meth:`MultiTaskNet.shared_layer` gives it the
parameter to measure gradients on.

The paper gives no widths; the defaults (channels 32-64-128, kernel 7, strides 1-2-2) give
~266k parameters with two heads (15 + 3 classes) for 300-sample windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .attention import SCA
from .multitask import MultiTaskNet, feature_shape

__all__ = ["DT4ECG", "ResNet1d", "ResidualBlock1d"]

# The paper's two tasks on its 15-subject, 3-activity study.
PAPER_HEADS: dict[str, int] = {"identity": 15, "activity": 3}


def _check_odd(kernel_size: int) -> None:
    # "Same" padding k // 2 keeps T only for odd kernels; an even one would add a sample.
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")


class ResidualBlock1d(nn.Module):
    """conv-BN-ReLU, conv-BN, plus shortcut, ReLU (He et al.'s basic block in 1-D).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    kernel_size : int
        Odd width of both convs.
    stride : int
        Stride of the first conv; the shortcut becomes a strided 1x1 conv + BN ("projected")
        whenever the stride or the width changes, the identity otherwise.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 7, stride: int = 1
    ) -> None:
        super().__init__()
        _check_odd(kernel_size)
        pad = kernel_size // 2
        # No conv bias: the BN right after it has its own shift.
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm1d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, C_out, T / stride)
        out = self.bn2(self.conv2(out))  # (B, C_out, T / stride)
        return self.relu(out + self.shortcut(x))  # (B, C_out, T / stride)


class ResNet1d(nn.Module):
    """Initial conv (+BN+ReLU) and one residual block per entry of ``channels``.

    Parameters
    ----------
    in_channels : int
        ECG leads in the input (B, in_channels, T).
    channels : sequence of int
        Width of each residual block; the initial conv has ``channels[0]``.
    kernel_size : int
        Odd conv width, for the initial conv and every block.
    strides : sequence of int
        Stride of each block (same length as ``channels``); the initial conv has stride 1.

    Notes
    -----
    Output: (B, channels[-1], T') with T' = T / prod(strides), rounded up at each stride
    (T = 300 -> 300, 150, 75 with the defaults).
    """

    emits_sequence = True

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128),
        kernel_size: int = 7,
        strides: Sequence[int] = (1, 2, 2),
    ) -> None:
        super().__init__()
        _check_odd(kernel_size)
        channels, strides = tuple(int(c) for c in channels), tuple(int(s) for s in strides)
        if not channels or len(channels) != len(strides):
            raise ValueError(
                f"channels and strides need the same non-zero length, got {channels}, {strides}"
            )
        self.in_channels = int(in_channels)
        self.out_channels = channels[-1]
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, channels[0], kernel_size, 1, kernel_size // 2, bias=False),
            nn.BatchNorm1d(channels[0]),
            nn.ReLU(inplace=True),
        )
        blocks, width = [], channels[0]
        for c, s in zip(channels, strides, strict=True):
            blocks.append(ResidualBlock1d(width, c, kernel_size, s))
            width = c
        self.blocks = nn.Sequential(*blocks)
        # GradNorm's W: the last conv every task's gradient passes through.
        self.shared_param_name = f"blocks.{len(blocks) - 1}.conv2.weight"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, channels[0], T)
        return self.blocks(x)  # (B, channels[-1], T')


class DT4ECG(MultiTaskNet):
    """The paper's model: :class:`ResNet1d` + :class:`~ecg_pipeline.models.attention.SCA` + heads.

    Equivalent to ``build_model("resnet1d", ..., attention="sca")`` (same modules, same
    state-dict keys), under its own class name so that logs and exported models say what it is.

    Parameters
    ----------
    in_channels : int
        ECG leads in the input (B, in_channels, n_samples).
    n_samples : int
        Window length T the model is built for (SCA's sequence FC depends on it).
    heads : Mapping[str, int] or None
        Task name -> n_classes; default the paper's ``{"identity": 15, "activity": 3}``.
    channels, kernel_size, strides
        Backbone widths, conv width, block strides (see :class:`ResNet1d`).
    shared_param : str or None
        Override of GradNorm's shared parameter (see :class:`MultiTaskNet`).
    head_dropout : float
        Dropout before the heads (0 in the paper).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_samples: int = 300,
        heads: Mapping[str, int] | None = None,
        *,
        channels: Sequence[int] = (32, 64, 128),
        kernel_size: int = 7,
        strides: Sequence[int] = (1, 2, 2),
        shared_param: str | None = None,
        head_dropout: float = 0.0,
    ) -> None:
        backbone = ResNet1d(in_channels, channels, kernel_size, strides)
        c, t = feature_shape(backbone, in_channels, n_samples)  # e.g. (128, 75) for T=300
        super().__init__(
            backbone,
            SCA(c, t),
            PAPER_HEADS if heads is None else heads,
            shared_param=shared_param,
            head_dropout=head_dropout,
        )
