"""The GPU power limit as a mechanism, without a worker: the spec, the preset, setting and putting
back a limit through the fake NVML (nvidia-ml-py's names, milliwatts and errors), the record a
killed run leaves, and `joulelab meters` reporting and restoring it."""

import inspect
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.core.spec import RunSpec, SpecError, parse_power_limit, spec_from_dict
from engine.orchestrate import presets
from engine.orchestrate.presets import PresetError
from engine.worker import power_limit
from engine.worker.power_limit import HeldLimit, PowerLimitError
from tests.fakes import fake_pynvml as fk
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, make_fake_pynvml

UUID = "GPU-00000000-1111-2222-3333-444444444444"  # FakeGpu's; A100: default 400 W, range 100-400 W
OTHER = "GPU-99999999-1111-2222-3333-444444444444"
runner = CliRunner()


def two_gpus(**first) -> FakeNvml:
    return FakeNvml(gpus=[FakeGpu(uuid=OTHER), FakeGpu(**first)])


# -- the fake follows nvidia-ml-py ------------------------------------------------------------


def test_the_fakes_limit_calls_have_nvmls_names_and_arguments():
    pynvml = pytest.importorskip("pynvml")
    fake = make_fake_pynvml()
    for name in (
        "nvmlDeviceGetPowerManagementLimit",
        "nvmlDeviceGetPowerManagementDefaultLimit",
        "nvmlDeviceGetPowerManagementLimitConstraints",
        "nvmlDeviceSetPowerManagementLimit",
    ):
        real = list(inspect.signature(getattr(pynvml, name)).parameters)
        assert list(inspect.signature(getattr(fake, name)).parameters) == real, name
    assert pynvml.NVML_ERROR_NO_PERMISSION == fk.NVML_ERROR_NO_PERMISSION
    assert pynvml.NVML_ERROR_INVALID_ARGUMENT == fk.NVML_ERROR_INVALID_ARGUMENT


def test_the_fake_refuses_a_limit_outside_its_range_as_nvml_does():
    fake = make_fake_pynvml()
    fake.nvmlInit()
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlDeviceSetPowerManagementLimit(0, 99_000)
    assert fake.nvmlDeviceGetPowerManagementLimitConstraints(0) == [100_000, 400_000]


# -- the spec, the CLI's option and the preset ------------------------------------------------


def test_the_limit_is_in_the_configuration_key():
    assert RunSpec(power_limit_fraction=0.8).describe() == "synthetic/small/scratch/power-limit-x0.8"
    assert RunSpec(power_limit_w=250).describe() == "synthetic/small/scratch/power-limit-250W"
    assert RunSpec(amp=True, power_limit_w=250.0).mechanism == "amp+power-limit-250W"
    assert RunSpec().mechanism == "baseline"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"power_limit_w": 250, "power_limit_fraction": 0.8}, "set one of them, not both"),
        ({"power_limit_w": 0}, "power_limit_w: 0.0 must be > 0"),
        ({"power_limit_fraction": 3}, "power_limit_fraction: 3.0 must be <= 2"),
        ({"power_limit_fraction": "0.8"}, "power_limit_fraction: expected a number"),
    ],
)
def test_a_bad_limit_is_one_line(data, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict(data)


def test_the_option_takes_watts_or_a_fraction():
    assert parse_power_limit("250W") == {"power_limit_w": 250.0}
    assert parse_power_limit("0.7") == {"power_limit_fraction": 0.7}
    with pytest.raises(SpecError, match=r"^--power-limit 'lots': expected watts such as 250W"):
        parse_power_limit("lots")


def test_the_preset_sweeps_limits_against_the_baseline():
    loaded = presets.load("power-limit")
    keys = [c.key for c in loaded.configs]
    assert keys == [
        "synthetic/small/scratch/baseline",
        "synthetic/small/scratch/power-limit-x1",
        "synthetic/small/scratch/power-limit-x0.8",
        "synthetic/small/scratch/power-limit-x0.6",
    ]
    assert [loaded.specs[k].power_limit_fraction for k in keys] == [None, 1.0, 0.8, 0.6]
    assert all(loaded.specs[k].describe() == k and loaded.specs[k].device == "cuda" for k in keys)
    assert len(loaded.plan()) == 4 * 3
    # the command line's limit runs every configuration at it, and the keys say so
    quick = presets.load("quick", parse_power_limit("250W"))
    assert {c.key.rsplit("/", 1)[1] for c in quick.configs} == {"power-limit-250W"}
    # but not on a preset that sweeps limits itself: refused, not ignored
    with pytest.raises(PresetError, match=r"and the command line \(--power-limit\) sets one too"):
        presets.load("power-limit", parse_power_limit("250W"))


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ('mechanism = ["power-limit"]', "needs a limit: power_limit_w or power_limit_fraction"),
        ('mechanism = ["baseline"]\npower_limit_w = [250]', r"needs mechanism = \[\.\.\., 'power-limit'\]"),
        ('mechanism = ["power-limit"]\npower_limit_fraction = [0]', "power_limit_fraction: 0.0 must be > 0"),
        (
            'mechanism = ["power-limit"]\npower_limit_fraction = [0.8]\n[settings]\npower_limit_w = 250',
            r"power_limit_fraction sweeps the power limit, and \[settings\] sets one too",
        ),
    ],
)
def test_a_preset_without_a_usable_limit_is_one_line(tmp_path, matrix, message):
    path = tmp_path / "p.toml"
    path.write_text(f"[matrix]\n{matrix}\n")
    with pytest.raises(PresetError, match=message):
        presets.load(str(path))


# -- setting and putting back -----------------------------------------------------------------


def test_a_limit_is_set_read_back_recorded_and_put_back():
    state = two_gpus(power_limit_mw=350_000)
    held = HeldLimit.hold(UUID, watts=None, fraction=0.5, run_id="r1", pynvml_module=make_fake_pynvml(state))
    assert state.gpus[1].power_limit_mw == 200_000 and state.gpus[0].power_limit_mw == 400_000
    assert state.limit_sets == [(1, 200_000)]
    record = held.record
    assert (record["asked"], record["asked_w"], record["set_w"]) == ("0.5 x default", 200.0, 200.0)
    assert (record["previous_w"], record["default_w"], record["range_w"]) == (350.0, 400.0, [100.0, 400.0])
    assert record["nvml_index"] == 1 and record["uuid"] == UUID and record["restored"] is None
    # while it is held, a record says how to put it back
    [left], problems = power_limit.read_leftovers()
    assert problems == [] and (left.uuid, left.limit_w, left.previous_w, left.run_id) == (UUID, 200.0, 350.0, "r1")
    held.restore()
    assert state.gpus[1].power_limit_mw == 350_000
    assert (held.record["restored"], held.record["restored_w"]) == (True, 350.0)
    assert power_limit.read_leftovers() == ([], [])
    assert state.initialized == 0  # NVML shut down again


@pytest.mark.parametrize(
    ("gpu", "asked", "message"),
    [
        ({}, {"watts": 450.0}, r"^power-limit: 450 W \(450 W\) is outside the range GPU 1 \(.*\) allows, 100-400 W"),
        ({}, {"fraction": 0.2}, r"^power-limit: 0.2 x default \(80 W\) is outside the range"),
        ({"set_limit_error": fk.NVML_ERROR_NO_PERMISSION}, {"watts": 300.0}, r"no permission to set its power limit"),
        ({"set_limit_error": fk.NVML_ERROR_NOT_SUPPORTED}, {"watts": 300.0}, r"does not support setting"),
        ({"power_limit_mw": None}, {"watts": 300.0}, r"has no power limit NVML can read"),
    ],
)
def test_a_limit_that_cannot_be_set_is_one_line_and_changes_nothing(gpu, asked, message):
    state = two_gpus(**gpu)
    before = state.gpus[1].power_limit_mw
    with pytest.raises(PowerLimitError, match=message) as e:
        HeldLimit.hold(
            UUID,
            watts=asked.get("watts"),
            fraction=asked.get("fraction"),
            run_id="r1",
            pynvml_module=make_fake_pynvml(state),
        )
    assert "\n" not in str(e.value) and e.value.exit_code == 2
    assert state.gpus[1].power_limit_mw == before and state.limit_sets == []
    assert power_limit.read_leftovers() == ([], [])  # no record of a limit never set
    assert state.initialized == 0


# -- a limit left set: reported, restored ----------------------------------------------------


def leave_a_limit(state: FakeNvml) -> None:
    """A run that set 200 W and was killed before it put 400 W back: its record names a process
    that has ended (one started and reaped here)."""
    HeldLimit.hold(UUID, watts=200.0, fraction=None, run_id="killed-run", pynvml_module=make_fake_pynvml(state))
    ended = subprocess.Popen(["true"])
    ended.wait()
    path = power_limit.records_dir() / f"{UUID}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": ended.pid}))


def test_a_limit_held_by_a_run_still_running_is_reported_as_held_and_not_restored(monkeypatch):
    state = two_gpus()
    HeldLimit.hold(UUID, watts=200.0, fraction=None, run_id="running-run", pynvml_module=make_fake_pynvml(state))
    [line] = power_limit.leftover_lines()
    assert "is at the power limit of 200 W that run running-run (pid " in line
    assert "still running" in line and line.endswith("it puts 400 W back when it ends")
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(state))
    result = runner.invoke(app, ["meters", "--restore-power-limit"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "still running" in result.stdout and "not touched" in result.stdout
    assert state.gpus[1].power_limit_mw == 200_000 and len(power_limit.read_leftovers()[0]) == 1


def test_meters_reports_a_limit_left_set_and_restores_it(monkeypatch):
    state = two_gpus()
    leave_a_limit(state)
    assert state.gpus[1].power_limit_mw == 200_000
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(state))

    result = runner.invoke(app, ["meters", "--seconds", "0.1"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.stderr.splitlines() if "power limit" in x]
    assert f"GPU 1 (NVIDIA A100-SXM4-40GB, {UUID}) may still be at the power limit of 200 W" in line
    assert "that run killed-run (pid " in line and "put back to 400 W" in line
    assert line.endswith("restore it with `joulelab meters --restore-power-limit`")
    result = runner.invoke(app, ["meters", "--seconds", "0.1", "--format", "json"])
    assert json.loads(result.stdout)["power_limit_leftover"] == [line.removeprefix("joulelab: ")]

    result = runner.invoke(app, ["meters", "--restore-power-limit"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.strip()
        == f"GPU 1 (NVIDIA A100-SXM4-40GB, {UUID}): power limit 200 W -> 400 W (run killed-run had set 200 W)"
    )
    assert state.gpus[1].power_limit_mw == 400_000
    assert power_limit.read_leftovers() == ([], [])
    result = runner.invoke(app, ["meters", "--restore-power-limit"])
    assert result.exit_code == 0 and "no GPU power limit was left set by a JouleLab run" in result.stdout


def test_a_restore_without_permission_keeps_the_record(monkeypatch):
    state = two_gpus()
    leave_a_limit(state)
    state.gpus[1].set_limit_error = fk.NVML_ERROR_NO_PERMISSION
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(state))
    result = runner.invoke(app, ["meters", "--restore-power-limit"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "not restored to 400 W (Insufficient Permissions (NVML error 4)); its record stays in" in result.stderr
    assert len(power_limit.read_leftovers()[0]) == 1


def test_a_damaged_record_is_one_line():
    power_limit.records_dir().mkdir(parents=True)
    (power_limit.records_dir() / f"{UUID}.json").write_text('{"uuid": ')
    assert power_limit.read_leftovers()[0] == []
    [line] = power_limit.leftover_lines()
    assert line.startswith("power-limit record ") and " is damaged (" in line and "\n" not in line
    result = runner.invoke(app, ["meters", "--restore-power-limit"])
    assert result.exit_code == 1 and "is damaged" in result.stderr and "Traceback" not in result.output
