"""Transfer versus scratch on a tiny problem, metered with JouleLab's Python API.

    python examples/tiny_transfer.py --mode transfer --seed 0 --logs logs
    python examples/tiny_transfer.py --mode scratch --seed 0 --logs logs
    joulelab compare --last --logs logs

Plain PyTorch: a two-layer network learns to tell 8 classes of points apart. `transfer` first
pretrains the network's body on 8 other classes (its own metered phase) and then trains only a
new head; `scratch` trains the whole network on the target classes. Both are then tested.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import joulelab


def task(classes: range, seed: int, n: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around one centre per class (the centres are fixed; the draw depends on the seed)."""
    centres = torch.randn(16, 32, generator=torch.Generator().manual_seed(1234)) * 2
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(list(classes)).repeat(n // len(classes))
    x = centres[y] + torch.randn(len(y), 32, generator=g)
    return x, y - classes.start


def fit(net: nn.Module, params, x: torch.Tensor, y: torch.Tensor, epochs: int, run=None, val=None) -> None:
    optimiser = torch.optim.SGD(params, lr=0.1)
    for _ in range(epochs):
        for i in range(0, len(x), 32):
            optimiser.zero_grad()
            nn.functional.cross_entropy(net(x[i : i + 32]), y[i : i + 32]).backward()
            optimiser.step()
        if run is not None and val is not None:
            run.epoch(val_accuracy=accuracy(net, *val))


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["transfer", "scratch"], default="scratch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--logs", default="logs")
    parser.add_argument("--idle-s", type=float, default=1.0)
    parser.add_argument("--batch", default=None, help="groups the runs of one experiment (compare --last)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    body = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
    labels = {"mode": args.mode, "seed": args.seed, "dataset": "points", "size": "tiny"}
    if args.batch:
        labels["batch"] = args.batch
    x_train, y_train = task(range(8, 16), args.seed)
    x_val, y_val = task(range(8, 16), args.seed + 100, n=256)
    x_test, y_test = task(range(8, 16), args.seed + 200, n=512)
    with joulelab.run("tiny-transfer", logs=args.logs, labels=labels, idle_s=args.idle_s) as run:
        if args.mode == "transfer":
            with run.phase("pretrain"):
                source = nn.Sequential(body, nn.Linear(64, 8))
                fit(source, source.parameters(), *task(range(0, 8), args.seed), epochs=args.epochs)
            body.requires_grad_(False)
        net = nn.Sequential(body, nn.Linear(64, 8))
        trainable = [p for p in net.parameters() if p.requires_grad]
        with run.phase("train"):
            fit(net, trainable, x_train, y_train, args.epochs, run=run, val=(x_val, y_val))
        with run.phase("test"):
            acc = accuracy(net, x_test, y_test)
        run.result(accuracy=acc, inferences=len(x_test), train_samples=args.epochs * len(x_train))
    print(f"{args.mode} seed {args.seed}: accuracy {acc:.3f}, run {run.run_id}")


if __name__ == "__main__":
    main()
