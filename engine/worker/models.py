"""Networks: small and big, for windowed signals (1-D conv) and feature vectors (MLP).

Every network is a feature body and a classification head, so transfer can keep the body and
replace the head (a user's own network too: engine.worker.networks wraps it so).
"big" on windows follows the MotionSense authors' identification net (four conv
layers of 64, 64, 32, 32 filters, each with batch-norm, pooling and dropout; dense 256 and 64;
about 0.2 M parameters); "small" is a fraction of it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class Network(nn.Module):
    """What the study does with a network: replace or extend its head, freeze its body."""

    def replace_head(self, n_classes: int) -> None:
        raise NotImplementedError

    def extend_head(self, n_classes: int) -> None:
        raise NotImplementedError

    def freeze_body(self) -> None:
        raise NotImplementedError


class Net(Network):
    def __init__(self, body: nn.Module, body_dim: int, n_classes: int) -> None:
        super().__init__()
        self.body = body
        self.body_dim = body_dim
        self.head: nn.Module = nn.Linear(body_dim, n_classes)  # extend_head makes it a Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.body(x))
        return logits

    def replace_head(self, n_classes: int) -> None:
        self.head = nn.Linear(self.body_dim, n_classes)

    def extend_head(self, n_classes: int) -> None:
        """Keep the source network whole (body and head) and add new layers on top, as the study
        built its transferred network: the old head becomes part of the body, so the network
        grows and its inference costs more than the source network's."""
        old_head = self.head
        assert isinstance(old_head, nn.Linear), "a head is extended once, from build_network's Linear"
        width = self.body_dim
        self.body = nn.Sequential(self.body, old_head, nn.ReLU())
        self.body_dim = old_head.out_features
        self.head = nn.Sequential(nn.Linear(self.body_dim, width), nn.ReLU(), nn.Linear(width, n_classes))

    def freeze_body(self) -> None:
        for p in self.body.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> Net:
        super().train(mode)
        # A frozen body keeps its batch-norm statistics and has no dropout: it is a fixed feature
        # extractor, exactly as the source task left it.
        if mode and not any(p.requires_grad for p in self.body.parameters()):
            self.body.eval()
        return self


def _conv_block(c_in: int, c_out: int, kernel: int, batchnorm: bool, pool: bool, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(c_out))
    layers.append(nn.ReLU())
    if pool:
        layers.append(nn.MaxPool1d(2))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return layers


def _dense(d_in: int, d_out: int, batchnorm: bool, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(d_in, d_out, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(d_out))
    layers.append(nn.ReLU())
    if dropout:
        layers.append(nn.Dropout(dropout))
    return layers


def _scaled(n: int, width: float) -> int:
    return max(1, round(n * width))


def _conv_body(channels: int, length: int, size: str, batchnorm: bool, width: float = 1.0) -> tuple[nn.Module, int]:
    def w(n: int) -> int:
        return _scaled(n, width)

    if size == "small":
        layers = [
            *_conv_block(channels, w(16), 5, batchnorm, True, 0.0),
            *_conv_block(w(16), w(16), 5, batchnorm, True, 0.0),
        ]
        flat = w(16) * (length // 4)
        layers += [nn.Flatten(), *_dense(flat, w(32), batchnorm, 0.0)]
        return nn.Sequential(*layers), w(32)
    layers = [
        *_conv_block(channels, w(64), 5, batchnorm, True, 0.1),
        *_conv_block(w(64), w(64), 5, batchnorm, True, 0.1),
        *_conv_block(w(64), w(32), 5, batchnorm, True, 0.1),
        *_conv_block(w(32), w(32), 5, batchnorm, False, 0.1),
    ]
    flat = w(32) * (length // 8)
    layers += [nn.Flatten(), *_dense(flat, w(256), batchnorm, 0.2), *_dense(w(256), w(64), batchnorm, 0.2)]
    return nn.Sequential(*layers), w(64)


def _mlp_body(features: int, size: str, batchnorm: bool, width: float = 1.0) -> tuple[nn.Module, int]:
    widths = tuple(_scaled(n, width) for n in ((64, 32) if size == "small" else (512, 256, 64)))
    dropout = 0.0 if size == "small" else 0.2
    layers: list[nn.Module] = []
    d_in = features
    for width in widths:
        layers += _dense(d_in, width, batchnorm, dropout)
        d_in = width
    return nn.Sequential(*layers), widths[-1]


def build_network(
    input_shape: tuple[int, ...], size: str, n_classes: int, batchnorm: bool = True, width: float = 1.0
) -> Net:
    """A network for (channels, length) windows or (features,) vectors; `width` multiplies every
    hidden layer's channels/units (1 = the study's network; the input and output stay)."""
    if len(input_shape) == 2:
        body, dim = _conv_body(input_shape[0], input_shape[1], size, batchnorm, width)
    elif len(input_shape) == 1:
        body, dim = _mlp_body(input_shape[0], size, batchnorm, width)
    else:
        raise ValueError(f"unsupported input shape {input_shape}")
    return Net(body, dim, n_classes)


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def flops_per_sample(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates x 2 of one forward pass through the conv and linear layers.

    Counts dense compute: pruned (zeroed) weights still cost a multiply in a dense kernel. Only
    Conv1d and Linear layers are counted (flops_not_counted names what a network has beyond them).
    """
    total = 0

    def conv_hook(module: nn.Conv1d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * out.numel() * module.in_channels // module.groups * module.kernel_size[0]

    def linear_hook(module: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * out.numel() * module.in_features

    hooks: list[RemovableHandle] = []
    for module in net.modules():
        if isinstance(module, nn.Conv1d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros((1, *input_shape), device=next(net.parameters()).device))
    net.train(was_training)
    for h in hooks:
        h.remove()
    return total


COUNTED = (nn.Conv1d, nn.Linear)
# Layers without multiply-accumulates worth counting (or none at all)
UNCOUNTED_OK = (
    nn.BatchNorm1d,
    nn.ReLU,
    nn.Dropout,
    nn.MaxPool1d,
    nn.Flatten,
    nn.Sequential,
    nn.Identity,
    nn.AvgPool1d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool1d,
    nn.LayerNorm,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
)


def flops_not_counted(net: nn.Module) -> list[str]:
    """Types of the network's compute layers that flops_per_sample does not count (a user's
    Conv2d, LSTM, attention ...): its estimate is a lower bound when this is not empty."""
    seen: list[str] = []
    for module in net.modules():
        has_params = any(True for _ in module.parameters(recurse=False))
        if isinstance(module, COUNTED) or isinstance(module, UNCOUNTED_OK) or not has_params:
            continue
        if type(module).__name__ not in seen:
            seen.append(type(module).__name__)
    return seen
