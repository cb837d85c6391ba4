"""reuse_pretrain_record, a pure function: a cached pretraining record in this run's terms."""

import msgspec

from engine.core.records import EnergyValue, PhaseTotal, PretrainRecord
from engine.worker.pretraining import reuse_pretrain_record


def modelled(gross_j: float, idle_j: float, kind: str, basis: dict[str, float] | None) -> EnergyValue:
    method = "model:tdp-cpu-time" if kind == "cpu" else "model:rss-dram"
    return EnergyValue(
        gross_j=gross_j, idle_j=idle_j, net_j=gross_j - idle_j, source="modelled", method=method, kind=kind, basis=basis
    )


def record(energy: dict[str, EnergyValue], source: str = "modelled") -> PretrainRecord:
    parts = energy.values()
    total = PhaseTotal(
        gross_j=sum(e.gross_j for e in parts),
        idle_j=sum(e.idle_j for e in parts),
        net_j=sum(e.net_j for e in parts),
        source=source,
        methods=sorted(e.method for e in parts),
    )
    return PretrainRecord(run_id="r1", duration_s=10.0, total=total, energy=energy, source_accuracy_frac=0.9)


BASIS = {"cpu": {"watts_per_core": 10.0}, "dram": {"watts_per_gb": 0.375}}


def test_a_record_under_the_same_basis_is_reused_as_it_is():
    cached = record(
        {"cpu": modelled(100.0, 20.0, "cpu", BASIS["cpu"]), "dram": modelled(4.0, 1.0, "dram", BASIS["dram"])}
    )
    out = reuse_pretrain_record(cached, BASIS, "modelled")
    assert out == cached and out is not cached
    assert not out.remodelled and out.incomparable is None and out.basis_unknown is None


def test_a_changed_tdp_re_models_the_joules_exactly():
    cached = record(
        {
            "cpu": modelled(100.0, 20.0, "cpu", {"watts_per_core": 5.0}),
            "dram": modelled(4.0, 1.0, "dram", BASIS["dram"]),
        }
    )
    before = msgspec.json.encode(cached)
    out = reuse_pretrain_record(cached, BASIS, "modelled")
    cpu = out.energy["cpu"]
    # J = CPU-seconds x W per core: twice the watts per core, twice the joules
    assert (cpu.gross_j, cpu.idle_j, cpu.net_j) == (200.0, 40.0, 160.0)
    assert cpu.basis == {"watts_per_core": 10.0} and cpu.remodelled_from == {"watts_per_core": 5.0}
    assert out.energy["dram"] == cached.energy["dram"]  # its basis did not change
    assert out.remodelled
    assert out.total is not None and (out.total.gross_j, out.total.idle_j, out.total.net_j) == (204.0, 41.0, 163.0)
    assert out.total.source == "modelled" and out.total.methods == cached.total.methods
    assert msgspec.json.encode(cached) == before  # the cached record itself is untouched


def test_a_record_from_another_kind_of_meter_is_incomparable():
    counter = EnergyValue(gross_j=80.0, idle_j=10.0, net_j=70.0, source="counter", method="rapl:package-0", kind="cpu")
    cached = record({"package-0": counter}, source="counter")
    out = reuse_pretrain_record(cached, BASIS, "modelled")
    assert out.incomparable == (
        "the source network's pretraining was counter, this run is modelled; "
        "retrain it here (reuse_source = false) to compare"
    )
    assert out.energy == cached.energy and out.total == cached.total and not out.remodelled


def test_a_record_cached_before_the_basis_was_kept_is_not_re_modelled():
    cached = record({"cpu": modelled(100.0, 20.0, "cpu", None)})
    out = reuse_pretrain_record(cached, BASIS, "modelled")
    assert out.basis_unknown == "cached before JouleLab recorded the model's basis: not re-modelled"
    assert out.energy == cached.energy and not out.remodelled


def test_counters_are_never_re_modelled():
    counter = EnergyValue(gross_j=80.0, idle_j=10.0, net_j=70.0, source="counter", method="rapl:package-0", kind="cpu")
    cached = record({"package-0": counter}, source="counter")
    out = reuse_pretrain_record(cached, {}, "counter")  # a RAPL run has no modelled basis
    assert out == cached
