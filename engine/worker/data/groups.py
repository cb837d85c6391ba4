"""Source and target groups for transfer: who the source network learned, who the target task is."""

from __future__ import annotations

from engine.worker.data import DataError


def check_groups(source: tuple[str, ...], target: tuple[str, ...], available: list[str], dataset: str) -> None:
    known = set(available)
    for name, group in (("source_group", source), ("target_group", target)):
        unknown = [g for g in group if g not in known]
        if unknown:
            raise DataError(
                f"{dataset}: {name} names {', '.join(unknown)}, not in the data "
                f"(available: {', '.join(available)}); fix the group in the spec or preset"
            )
        if len(group) < 2:
            raise DataError(f"{dataset}: {name} has {len(group)} member(s); identification needs at least 2")
    overlap = sorted(set(source) & set(target), key=available.index)
    if overlap:
        raise DataError(
            f"{dataset}: {', '.join(overlap)} in both source_group and target_group; "
            "transfer must be measured on people the source network never saw"
        )


def complete_groups(
    available: list[str], source: tuple[str, ...] | None, target: tuple[str, ...] | None, noun: str
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """Fill in whichever group the spec left out, and say by which rule.

    Neither given: the first half of `available` (in its stable order) is the source, the rest the
    target. One given: the other is everyone else available.
    """
    if source is not None and target is not None:
        return source, target, "from the spec"
    if source is not None:
        return (
            source,
            tuple(a for a in available if a not in set(source)),
            f"source from the spec, target = every other {noun}",
        )
    if target is not None:
        return (
            tuple(a for a in available if a not in set(target)),
            target,
            f"target from the spec, source = every other {noun}",
        )
    half = len(available) // 2
    return (
        tuple(available[:half]),
        tuple(available[half:]),
        f"default: first half of the {noun}s is the source, the rest the target",
    )
