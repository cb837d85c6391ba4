import pytest

from engine.core.spec import RunSpec, SpecError, spec_from_dict


def test_defaults_are_valid_and_round_trip():
    spec = RunSpec()
    assert spec_from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            # a name of the user's own is accepted by its shape (engine.worker.data.custom finds it)
            {"dataset": "MotionSence"},
            "dataset: 'MotionSence' is not one of synthetic, motionsense, extrasensory (did you mean 'motionsense'?)",
        ),
        ({"size": "huge"}, "size: 'huge' is not one of small, big"),
        ({"mode": "transfr"}, "did you mean 'transfer'?"),
        ({"epochs": 0}, "epochs: 0 must be >= 1"),
        ({"epochs": -3}, "epochs: -3 must be >= 1"),
        ({"epochs": 2.5}, "epochs: expected an integer, got 2.5"),
        ({"epochs": True}, "epochs: expected an integer, got True"),
        ({"lr": 0}, "lr: 0.0 must be > 0"),
        ({"sample_hz": 500}, "sample_hz: 500.0 must be <= 100"),
        ({"epoch": 3}, "unknown key 'epoch' (did you mean 'epochs'?)"),
        ({"source_group": []}, "source_group: an empty group"),
        ({"run_id": "../escape"}, "run_id: '../escape' may hold only"),
    ],
)
def test_bad_values_give_one_line_naming_the_field(data, message):
    with pytest.raises(SpecError) as info:
        spec_from_dict(data, "my.json")
    text = str(info.value)
    assert message in text
    assert text.startswith("my.json: ")
    assert "\n" not in text


def test_integers_are_accepted_where_floats_are_expected():
    assert spec_from_dict({"lr": 1, "idle_s": 0}).lr == 1.0


def test_a_plain_spec_is_written_without_the_fields_it_does_not_use():
    # a run without a user network, power limit or data parallelism writes the spec older logs have
    plain = RunSpec().to_dict()
    for key in ("procs_per_node", "model", "model_dir", "power_limit_w", "power_limit_fraction"):
        assert key not in plain
    for fields in ({"procs_per_node": 2, "model": "nets:tiny"}, {"power_limit_fraction": 0.8}):
        used = RunSpec(**fields).to_dict()
        assert {k: used[k] for k in fields} == fields
        assert spec_from_dict(used) == RunSpec(**fields)
