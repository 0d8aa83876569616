"""The multi-task wrapper shared by every model: backbone -> attention -> pooling -> heads.

A backbone is any ``nn.Module`` with

- ``in_channels: int`` (ECG leads it expects),
- ``out_channels: int`` (feature width F or C it emits),
- ``shared_param_name: str`` (dotted name, relative to the backbone, of the parameter GradNorm
  measures per-task gradient norms on: its "last shared layer"),
- ``emits_sequence: bool``: True for conv backbones, whose output is a (B, C, T') map that
  attention and global average pooling act on; False for LSTM/MLP, which emit (B, F) vectors.

:class:`MultiTaskNet` returns a dict of per-task logits (no softmax: the training loop uses
``cross_entropy`` on logits). :class:`TupleOutput` wraps it for export (torch.export / MLflow
want tensors or tuples of tensors, in a fixed order).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["ConcatOutput", "MultiTaskNet", "TupleOutput", "feature_shape", "validate_heads"]


def validate_heads(heads: Mapping[str, int]) -> dict[str, int]:
    """Check a ``{task name: n_classes}`` mapping and return it as a plain ordered dict.

    Raises
    ------
    ValueError
        If it is empty, a name is not a non-empty string without ".", or a class count < 1.
    """
    if not isinstance(heads, Mapping) or len(heads) == 0:
        raise ValueError(f"heads must be a non-empty mapping name -> n_classes, got {heads!r}")
    out: dict[str, int] = {}
    for name, n in heads.items():
        # nn.ModuleDict keys cannot contain "." and must be non-empty strings.
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"head name must be a non-empty string without '.', got {name!r}")
        if isinstance(n, bool) or int(n) != n or int(n) < 1:
            raise ValueError(f"head {name!r} needs an integer n_classes >= 1, got {n!r}")
        out[name] = int(n)
    return out


def feature_shape(backbone: nn.Module, in_channels: int, n_samples: int) -> tuple[int, ...]:
    """Shape of the backbone's output for one (1, in_channels, n_samples) input, batch dim dropped.

    A dry forward pass in eval mode under ``no_grad``: exact for any stack of convs, pools and
    paddings (no stride arithmetic to keep in sync with the code), does not touch BatchNorm
    running statistics, and draws no random numbers (so seeded initialisation is unaffected).
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            param = next(backbone.parameters(), None)
            device = param.device if param is not None else None
            out = backbone(torch.zeros(1, in_channels, n_samples, device=device))
    finally:
        backbone.train(was_training)
    return tuple(out.shape[1:])


class MultiTaskNet(nn.Module):
    """Backbone -> attention -> global average pooling over time -> one linear head per task.

    Parameters
    ----------
    backbone : nn.Module
        A feature extractor as described in the module docstring.
    attention : nn.Module or None
        Applied to the backbone's (B, C, T') map before pooling; ``None`` for no attention.
        Must be ``None`` (or ``nn.Identity``) for backbones that emit vectors.
    heads : Mapping[str, int]
        Task name -> number of classes, in output order (e.g. ``{"identity": 15,
        "activity": 3}``; a dataset with one task has one head).
    shared_param : str or None
        Dotted name, relative to this model, of the parameter :meth:`shared_layer` returns
        (e.g. ``"backbone.blocks.1.conv2.weight"``); default: the backbone's last shared layer.
    head_dropout : float
        Dropout on the pooled features before the heads (0 = none, the paper's setting).

    Attributes
    ----------
    head_names : tuple[str, ...]
        Task names in output order (the order of :meth:`forward_tuple`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        attention: nn.Module | None,
        heads: Mapping[str, int],
        *,
        shared_param: str | None = None,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        heads = validate_heads(heads)
        if attention is None:
            attention = nn.Identity()
        if not getattr(backbone, "emits_sequence", True) and not isinstance(attention, nn.Identity):
            raise ValueError(
                f"{type(backbone).__name__} emits (B, F) vectors, not a (B, C, T) map: "
                "attention applies to convolutional backbones only"
            )
        self.backbone = backbone
        self.attention = attention
        self.dropout = nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity()
        width = backbone.out_channels
        self.heads = nn.ModuleDict({name: nn.Linear(width, n) for name, n in heads.items()})
        self.head_names: tuple[str, ...] = tuple(heads)
        self.n_classes: dict[str, int] = heads
        self.in_channels: int = backbone.in_channels
        self.shared_param_name = shared_param or f"backbone.{backbone.shared_param_name}"
        try:
            self.get_parameter(self.shared_param_name)
        except AttributeError as exc:
            convs = [n for n, p in self.backbone.named_parameters() if p.dim() >= 2]
            raise ValueError(
                f"shared_param {self.shared_param_name!r} is not a parameter of this model; "
                f"weight matrices of the backbone: {['backbone.' + n for n in convs]}"
            ) from exc

    def shared_layer(self) -> nn.Parameter:
        """GradNorm's "last shared layer" ``W``: the parameter named by ``shared_param_name``.

        Every head's loss reaches it (it sits below the heads, above or at the end of the
        backbone), so ``||dL_i/dW||`` is defined for every task.
        """
        return self.get_parameter(self.shared_param_name)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled shared features, (B, C_in, T) -> (B, F): the input of every head."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, T), got {tuple(x.shape)}")
        z = self.backbone(x)  # (B, C, T') for conv backbones, (B, F) for LSTM/MLP
        if z.dim() == 3:
            z = self.attention(z)  # (B, C, T')
            z = z.mean(dim=-1)  # (B, C): global average pooling over time
        return z

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-task logits: ``{name: (B, n_classes)}`` for input (B, C_in, T), in head order."""
        z = self.dropout(self.features(x))  # (B, F)
        return {name: head(z) for name, head in self.heads.items()}

    def forward_tuple(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The same logits as :meth:`forward`, as a tuple in :attr:`head_names` order."""
        out = self.forward(x)
        return tuple(out[name] for name in self.head_names)


class TupleOutput(nn.Module):
    """Export wrapper: ``forward(x)`` returns ``model.forward_tuple(x)``.

    It holds ``model`` as a submodule, so its parameters and state dict are the model's
    (prefixed ``model.``); use it for ``torch.export.export(TupleOutput(model).eval(), (x,))``
    and keep :attr:`head_names` with the artefact to name the outputs.
    """

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model
        self.head_names: tuple[str, ...] = model.head_names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.forward_tuple(x)  # one (B, n_classes) tensor per head


class ConcatOutput(nn.Module):
    """Serving wrapper: ``forward(x)`` returns every head's logits side by side in one tensor.

    MLflow's pyfunc serving (and its validation of the logged input example) takes one output
    tensor per model, not a tuple; the heads' columns are kept apart by :attr:`head_names` and
    :attr:`head_sizes`, stored with the model: columns ``sum(sizes[:i])`` to
    ``sum(sizes[:i + 1])`` are head ``i``'s.
    """

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model
        self.head_names: tuple[str, ...] = model.head_names
        self.head_sizes: tuple[int, ...] = tuple(int(model.n_classes[h]) for h in model.head_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.model.forward_tuple(x), dim=1)  # (B, sum of n_classes)
