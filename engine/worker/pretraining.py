"""A transfer run's source network: loaded from the cache (engine.worker.source_networks) with the
energy its pretraining cost, or pretrained here in a metered phase and saved; and a cached
pretraining record put in this run's terms (`reuse_pretrain_record`, a pure function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from engine.core.energy import sum_energy_records
from engine.core.records import Metrics, PretrainRecord, RecordError, pretrain_from_json, to_json_object
from engine.worker.ranks import Ranks

if TYPE_CHECKING:
    import torch

    from engine.core.spec import RunSpec
    from engine.worker.data import Split
    from engine.worker.device import Device
    from engine.worker.models import Network
    from engine.worker.phase_meter import PhaseMeter
    from engine.worker.train import Precision, Progress

PRETRAIN = "pretrain"


@dataclass
class SourceNetwork:
    """The source task's network and data; `cached` is the saved pretraining record when the
    network came from the cache, None when this run must pretrain it."""

    net: Network
    split: Split  # on the run's device (Device.place_split)
    x_val: torch.Tensor
    y_val: torch.Tensor
    key: str
    cached: PretrainRecord | None
    discarded: str | None = None  # why a cached network could not be used (so this run pretrains it again)


def open_source(spec: RunSpec, device: Device, source_split: Split, gap: int) -> SourceNetwork:
    """The source network: loaded from the cache when it exists (its record comes with it), else
    freshly built, to be pretrained by `pretrain_source`."""
    from engine.worker import source_networks as sources
    from engine.worker.data.prepare import holdout
    from engine.worker.networks import make_network

    split, x_val_host, y_val_host = holdout(source_split, spec.val_fraction, gap)
    net = make_network(spec, split.input_shape, split.n_classes)
    key = sources.source_key(spec, split.x_train, split.y_train, device.name)
    cached = sources.load(key) if spec.reuse_source else None
    net.to(device.name)
    split, x_val, y_val = device.place_split(split), device.tensor(x_val_host), device.tensor(y_val_host)
    if cached is None:
        return SourceNetwork(net, split, x_val, y_val, key, None)
    # A cache problem is never fatal: a record or weights that do not fit are a miss, said so.
    state, saved = cached
    try:
        record = pretrain_from_json(saved)
        problem = sources.state_mismatch(net.state_dict(), state)
    except RecordError as exc:
        problem = f"its record is unreadable ({exc})"
    if problem is not None:
        sources.discard(key)
        why = f"cached source network {key} discarded ({problem}); pretrained again here"
        return SourceNetwork(net, split, x_val, y_val, key, None, discarded=why)
    net.load_state_dict(state)
    return SourceNetwork(net, split, x_val, y_val, key, record)


def cached_pretraining(source: SourceNetwork, meter: PhaseMeter, metrics: Metrics) -> PretrainRecord:
    """The cached source network's pretraining in this run's terms (see reuse_pretrain_record),
    its test accuracy into `metrics`."""
    assert source.cached is not None, "only a source network from the cache has a cached record"
    record = reuse_pretrain_record(source.cached, meter.basis, meter.total_source)
    record.cached, record.key = True, source.key
    metrics.source_accuracy_frac = source.cached.source_accuracy_frac
    return record


def pretrain_source(
    source: SourceNetwork,
    spec: RunSpec,
    meter: PhaseMeter,
    metrics: Metrics,
    *,
    run_id: str,
    precision: Precision | None,
    on_progress: Callable[[Progress], None],
    on_epoch: Callable[[str, int, float], None],
    ranks: Ranks | None = None,
) -> PretrainRecord:
    """Train the source network in a metered pretrain phase (its test accuracy into `metrics`),
    and save it, with the record, for later runs. Over data-parallel `ranks` every rank trains
    and the leader alone reports, evaluates and saves."""
    from engine.worker import source_networks as sources
    from engine.worker.train import evaluate, fit

    split = source.split
    leads = ranks is None or ranks.leads
    meter.begin_window(PRETRAIN)
    fit(
        source.net,
        split.x_train,
        split.y_train,
        epochs=spec.effective_pretrain_epochs,
        batch_size=spec.batch_size,
        lr=spec.lr,
        seed=spec.seed,
        augment=spec.augment,
        phase=PRETRAIN,
        x_val=source.x_val,
        y_val=source.y_val,
        on_progress=on_progress if leads else None,
        on_epoch=(lambda ep, acc: on_epoch(PRETRAIN, ep, acc)) if leads else None,
        precision=precision,
        ranks=ranks or Ranks(),
    )
    source_accuracy = (
        evaluate(source.net, split.x_test, split.y_test, split.n_classes, precision=precision)["accuracy"]
        if leads
        else 0.0
    )
    metrics.source_accuracy_frac = source_accuracy
    phase = meter.end_window(PRETRAIN)
    record = PretrainRecord(
        run_id=run_id,
        duration_s=phase.duration_s,
        total=phase.total,
        energy=phase.energy,
        source_accuracy_frac=source_accuracy,
        source_classes=list(split.classes),
    )
    out = msgspec.structs.replace(record, cached=False, key=source.key, cache_discarded=source.discarded)
    if spec.reuse_source and leads and ranks is not None and ranks.nodes > 1:
        # this record holds node 0's joules only; the other nodes' arrive at the run's end
        out.cache_problem = "not saved: a run over several nodes knows its pretraining energy only at its end"
    elif spec.reuse_source and leads:
        problem = sources.save(source.key, source.net.state_dict(), to_json_object(record))
        if problem:
            out.cache_problem = problem
    return out


def reuse_pretrain_record(record: PretrainRecord, basis: dict[str, dict[str, float]], source: str) -> PretrainRecord:
    """A cached pretraining record in the terms of a run whose modelled domains have `basis` (what
    one joule is modelled from, PhaseMeter.basis) and whose totals have `source` (the weakest).

    Modelled joules are re-modelled under this basis (a changed --tdp rescales them exactly:
    J = CPU-seconds x W per core); a record from another kind of meter (a counter against a model)
    is flagged incomparable rather than set beside this run's joules. `record` is not changed.
    """
    out = msgspec.structs.replace(record)
    then_source = record.total.source if record.total is not None else None
    if then_source != source:
        out.incomparable = (
            f"the source network's pretraining was {then_source}, this run is {source}; "
            "retrain it here (reuse_source = false) to compare"
        )
        return out
    energy, remodelled, unknown = {}, False, False
    for name, e in record.energy.items():
        now, then = basis.get(name), e.basis
        if e.source == "modelled" and now:
            if not then:
                unknown = True
            elif then != now:
                ((key, value),) = now.items()
                factor = value / then[key]
                e = msgspec.structs.replace(
                    e,
                    gross_j=e.gross_j * factor,
                    idle_j=e.idle_j * factor,
                    net_j=e.net_j * factor,
                    basis=dict(now),
                    remodelled_from=then,
                )
                remodelled = True
        energy[name] = e
    if remodelled and record.total is not None:
        out.energy, out.total = energy, sum_energy_records(energy, record.total)
        out.remodelled = True
    elif unknown:
        out.basis_unknown = "cached before JouleLab recorded the model's basis: not re-modelled"
    return out
