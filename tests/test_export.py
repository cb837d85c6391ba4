"""The one exporter, against golden files made from real run logs (tests/golden/logs).

Each format is read back with pandas/pyarrow and its values checked against the log itself, and
the bytes are compared with the golden copy so an unintended format change is caught.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.core.events import Sample
from engine.outputs.export import CODECARBON_COLUMNS, TABLES, write
from engine.store.run_log import list_runs, read_events

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture()
def records():
    recs = list_runs(GOLDEN / "logs")
    assert [r.run_id for r in recs] == ["golden-transfer", "golden-scratch"]
    return recs


def check_against_log(frames: dict[str, pd.DataFrame], records) -> None:
    for r in records:
        s = r.summary
        runs = frames["runs"].set_index("run_id")
        assert runs.loc[r.run_id, "accuracy"] == pytest.approx(s.metrics.accuracy_frac)
        assert runs.loc[r.run_id, "train_net_j"] == pytest.approx(s.phases["train"].total.net_j)
        assert runs.loc[r.run_id, "energy_source"] == "modelled"
        phases = frames["phases"]
        mine = phases[phases.run_id == r.run_id]
        assert len(mine) == sum(len(p.energy) for p in s.phases.values())
        for _, row in mine.iterrows():
            e = s.phases[row.phase].energy[row.domain]
            assert (row.gross_j, row.idle_j, row.net_j) == pytest.approx((e.gross_j, e.idle_j, e.net_j))
            assert (row.source, row.method) == (e.source, e.method)
        events, _ = read_events(r.path / "events.jsonl")
        samples = [e for e in events if isinstance(e, Sample)]
        got = frames["samples"][frames["samples"].run_id == r.run_id]
        assert len(got) == sum(len(e.domains) for e in samples)
        last_cpu = got[got.domain == "cpu"].joules.iloc[-1]
        assert last_cpu == pytest.approx(samples[-1].domains["cpu"]["j"])
        assert set(got.source) == {"modelled"}
        curve = frames["curve"][frames["curve"].run_id == r.run_id]
        assert list(curve.val_accuracy) == pytest.approx([p.val_accuracy_frac for p in s.curve])


def test_csv_matches_the_log_and_the_golden_files(records, tmp_path):
    paths = write(records, "csv", tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{t}.csv" for t in TABLES)
    frames = {p.stem: pd.read_csv(p) for p in paths}
    check_against_log(frames, records)
    for p in paths:
        assert p.read_text() == (GOLDEN / "expected" / "csv" / p.name).read_text(), p.name
        assert p.stat().st_mode & 0o044  # readable by others, like any file the user writes


def test_parquet_matches_the_log(records, tmp_path):
    paths = write(records, "parquet", tmp_path)
    frames = {p.stem: pq.read_table(p).to_pandas() for p in paths}
    check_against_log(frames, records)
    csv_frames = {p.stem: pd.read_csv(p) for p in write(records, "csv", tmp_path / "csv")}
    pd.testing.assert_frame_equal(frames["phases"], csv_frames["phases"], check_dtype=False)


def test_json_matches_the_log_and_the_golden_file(records, tmp_path):
    (path,) = write(records, "json", tmp_path / "out.json")
    data = json.loads(path.read_text())
    assert set(data) == set(TABLES)
    check_against_log({k: pd.DataFrame(v) for k, v in data.items()}, records)
    assert data == json.loads((GOLDEN / "expected" / "json" / "joulelab.json").read_text())


def test_codecarbon_has_its_columns_and_kwh(records, tmp_path):
    (path,) = write(records, "codecarbon", tmp_path, carbon_intensity=100.0)
    assert path.name == "emissions.csv"
    df = pd.read_csv(path)
    assert list(df.columns) == [*CODECARBON_COLUMNS, "joulelab_energy_source"]
    for r, row in zip(records, df.itertuples()):
        gross = sum(e.gross_j for name, p in r.summary.phases.items() if name != "idle" for e in p.energy.values())
        assert row.energy_consumed == pytest.approx(gross / 3.6e6)
        assert row.emissions == pytest.approx(gross / 3.6e6 * 100.0 / 1000)
        assert row.joulelab_energy_source == "modelled"
    golden = write(records, "codecarbon", tmp_path / "default")[0]
    assert golden.read_text() == (GOLDEN / "expected" / "codecarbon" / "emissions.csv").read_text()
