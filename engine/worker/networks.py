"""Which network a run trains: JouleLab's own (engine.worker.models), or one of the user's own.

A user's network is `model = "package.module:factory"`, made fit for the study here:

    def factory(input_shape, n_classes, size, width) -> torch.nn.Module

`input_shape` is one sample's shape ((channels, time) for windows, (features,) for feature rows),
`size` is "small" or "big" and `width` the spec's multiplier, for the factory to honour or not.
The module says which part is its head (the layer that maps features to classes), so transfer can
keep the rest (the body) and replace or extend the head, in one of two ways:

- attributes `body` and `head` (the built-in networks' shape), the head being what `forward` ends
  with; or
- an attribute `joulelab_head = "classifier"` naming the head submodule (a dotted path, e.g.
  "classifier.2", for a layer inside a Sequential).

The head's input must be a flat vector of features (what a Linear takes); its output the classes.
Importing the module runs the user's code: only a spec that names it (from a preset the user
named, or the lab's form) does, with the spec's model_dir and the current directory first on
sys.path; nothing read from a log, a cache or an export is ever imported.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from engine.core.errors import JouleLabError
from engine.worker.models import Network, build_network

if TYPE_CHECKING:
    from engine.core.spec import RunSpec

HEAD_ATTRIBUTE = "joulelab_head"
HOW_TO_MARK = (
    "give the module attributes body and head, or a joulelab_head attribute naming its head "
    "submodule (README 'Your own networks')"
)


class UserNetworkError(JouleLabError):
    """A user network that cannot be imported, built or used; one line: the factory, what, the fix."""


def make_network(spec: RunSpec, input_shape: tuple[int, ...], n_classes: int) -> Network:
    """The spec's network for this data: the user's factory (spec.model) or JouleLab's own."""
    if spec.model is not None:
        return build_user_network(spec.model, input_shape, n_classes, spec.size, spec.width, spec.model_dir)
    return build_network(input_shape, spec.size, n_classes, spec.batchnorm, spec.width)


def import_factory(model: str, model_dir: str | None = None) -> Callable[..., object]:
    """The factory function `model` names, imported with model_dir and the current directory first
    on sys.path (said in the error when it cannot be found)."""
    module_name, _, attr = model.partition(":")
    search = [d for d in (model_dir, os.getcwd()) if d]
    for folder in reversed(search):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserNetworkError(
            f"model {model!r}: cannot import {module_name} ({type(exc).__name__}: {exc}); the worker looks "
            f"in {', '.join(search)} and the installed packages: put the module there or install it"
        ) from None
    except Exception as exc:  # the user's module raised while being imported
        raise UserNetworkError(
            f"model {model!r}: importing {module_name} raised {type(exc).__name__}: {exc}; fix the module"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserNetworkError(
            f"model {model!r}: {module_name} has no function {attr!r}; "
            "define factory(input_shape, n_classes, size, width) there"
        )
    return factory  # type: ignore[no-any-return]


def build_user_network(
    model: str,
    input_shape: tuple[int, ...],
    n_classes: int,
    size: str,
    width: float,
    model_dir: str | None = None,
) -> UserNet:
    """Call the factory and check what it returns: a Module with a head, whose output is one score
    per class. Every failure is a UserNetworkError (exit 2)."""
    factory = import_factory(model, model_dir)
    try:
        built = factory(tuple(input_shape), n_classes, size, width)
    except Exception as exc:
        raise UserNetworkError(
            f"model {model!r}: the factory raised {type(exc).__name__}: {exc}; "
            "fix factory(input_shape, n_classes, size, width)"
        ) from None
    if not isinstance(built, nn.Module):
        raise UserNetworkError(
            f"model {model!r}: the factory returned a {type(built).__name__}, not a torch.nn.Module; return the network"
        )
    head_name = _head_name(built, model)
    net = UserNet(built, head_name)
    try:
        net.body_dim, out = _probe(net, input_shape)
    except Exception as exc:
        raise UserNetworkError(
            f"model {model!r}: a forward pass of one sample of shape {tuple(input_shape)} raised "
            f"{type(exc).__name__}: {exc}; the network must take (batch, *input_shape)"
        ) from None
    if out != n_classes:
        raise UserNetworkError(
            f"model {model!r}: the network gives {out} outputs per sample, the task has {n_classes} "
            "classes; end the head with n_classes outputs"
        )
    return net


def _head_name(module: nn.Module, model: str) -> str:
    marked = getattr(module, HEAD_ATTRIBUTE, None)
    if marked is not None:
        if not isinstance(marked, str):
            raise UserNetworkError(f"model {model!r}: {HEAD_ATTRIBUTE} is {marked!r}; name the head submodule")
        try:
            module.get_submodule(marked)
        except AttributeError:
            raise UserNetworkError(
                f"model {model!r}: {HEAD_ATTRIBUTE} = {marked!r} names no submodule of the network; {HOW_TO_MARK}"
            ) from None
        return marked
    if isinstance(getattr(module, "head", None), nn.Module) and isinstance(getattr(module, "body", None), nn.Module):
        return "head"
    raise UserNetworkError(f"model {model!r}: the network has no head; {HOW_TO_MARK}")


def _probe(net: UserNet, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(features into the head, outputs per sample) from one forward pass of a zero sample."""
    seen: dict[str, int] = {}

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen["in"] = int(args[0].reshape(args[0].shape[0], -1).shape[1])

    handle = net.head.register_forward_pre_hook(hook)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros((1, *input_shape)))
    finally:
        handle.remove()
        net.train(was_training)
    if "in" not in seen:
        raise RuntimeError(f"the head {net.head_name!r} was not called by forward")
    return seen["in"], int(out.reshape(1, -1).shape[1])


class ExtendedHead(nn.Module):
    """The old head kept (part of the body from now on) and new layers on top, as Net.extend_head."""

    def __init__(self, old: nn.Module, old_out: int, width: int, n_classes: int) -> None:
        super().__init__()
        self.old = old
        self.new = nn.Sequential(nn.ReLU(), nn.Linear(old_out, width), nn.ReLU(), nn.Linear(width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.new(self.old(x))
        return out


class UserNet(Network):
    """A user's module with its head found: replace/extend the head and freeze the body as the
    built-in Net does (the body is everything but the head's new layers)."""

    def __init__(self, inner: nn.Module, head_name: str) -> None:
        super().__init__()
        self.inner = inner
        self.head_name = head_name
        self.body_dim = 0  # set by build_user_network's probe
        self.n_classes = 0
        self._frozen = False

    @property
    def head(self) -> nn.Module:
        return self.inner.get_submodule(self.head_name)

    def _set_head(self, head: nn.Module) -> None:
        parent, _, name = self.head_name.rpartition(".")
        setattr(self.inner.get_submodule(parent) if parent else self.inner, name, head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x)
        return out

    def _trainable(self) -> nn.Module:
        head = self.head
        return head.new if isinstance(head, ExtendedHead) else head

    def replace_head(self, n_classes: int) -> None:
        self._set_head(nn.Linear(self.body_dim, n_classes))

    def extend_head(self, n_classes: int) -> None:
        old = self.head
        old_out = _probe_out(old, self.body_dim)
        self._set_head(ExtendedHead(old, old_out, self.body_dim, n_classes))

    def freeze_body(self) -> None:
        trainable = {id(p) for p in self._trainable().parameters()}
        for p in self.parameters():
            if id(p) not in trainable:
                p.requires_grad_(False)
        self._frozen = True

    def train(self, mode: bool = True) -> UserNet:
        super().train(mode)
        # A frozen body is a fixed feature extractor: its batch-norm statistics stay, no dropout.
        if mode and self._frozen:
            self.inner.eval()
            self._trainable().train()
        return self


def _probe_out(head: nn.Module, body_dim: int) -> int:
    device = next(head.parameters()).device
    was_training = head.training
    head.eval()
    with torch.no_grad():
        out = head(torch.zeros((1, body_dim), device=device))
    head.train(was_training)
    return int(out.reshape(1, -1).shape[1])
