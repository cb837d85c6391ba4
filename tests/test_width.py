"""width: a multiplier of every hidden layer's channels/units; 1 is the study's network."""

import pytest

from engine.core.spec import RunSpec, SpecError, spec_from_dict
from engine.worker.models import build_network, count_parameters


@pytest.mark.parametrize(
    ("shape", "size", "params"),
    [((6, 128), "small", 18_602), ((6, 128), "big", 186_890), ((40,), "small", 5_130), ((40,), "big", 170_250)],
)
def test_width_one_is_the_studys_network(shape, size, params):
    assert count_parameters(build_network(shape, size, 10)) == params
    assert count_parameters(build_network(shape, size, 10, width=1.0)) == params


def test_width_scales_every_hidden_layer():
    net = build_network((6, 128), "big", 10, width=2)
    convs = [m.out_channels for m in net.modules() if m.__class__.__name__ == "Conv1d"]
    assert convs == [128, 128, 64, 64]
    assert net.body_dim == 128 and net.head.out_features == 10  # the output stays the task's
    # parameters grow about with width squared: the study's big network x16 is tens of millions
    assert count_parameters(build_network((6, 128), "big", 10, width=16)) > 200 * 186_890
    assert count_parameters(build_network((6, 128), "small", 10, width=0.5)) < 18_602


def test_width_in_the_spec_and_the_configuration_key():
    assert RunSpec(size="big", width=16).describe() == "synthetic/big-x16/scratch/baseline"
    assert RunSpec(size="big").describe() == "synthetic/big/scratch/baseline"
    assert spec_from_dict({"width": 8}).width == 8.0
    with pytest.raises(SpecError, match=r"^spec: width: -1.0 must be > 0$"):
        spec_from_dict({"width": -1})


def test_a_width_axis_in_a_preset(tmp_path):
    from engine.orchestrate import presets
    from engine.orchestrate.presets import PresetError

    path = tmp_path / "w.toml"
    path.write_text(
        '[matrix]\nsize = ["big"]\nmode = ["transfer", "scratch"]\nwidth = [1, 16]\n[settings]\nepochs = 1\nwidth = 4\n'
    )
    preset = presets.load(str(path))
    assert [c.key for c in preset.configs] == [
        "synthetic/big/transfer/baseline",
        "synthetic/big-x16/transfer/baseline",
        "synthetic/big/scratch/baseline",
        "synthetic/big-x16/scratch/baseline",
    ]
    assert [preset.specs[c.key].width for c in preset.configs] == [1.0, 16.0, 1.0, 16.0]  # the axis wins
    assert {c.group for c in preset.configs} == {"synthetic/big/baseline", "synthetic/big-x16/baseline"}
    path.write_text("[matrix]\nwidth = [0]\n")
    with pytest.raises(PresetError, match=r"\[matrix\]: width: 0.0 must be > 0$"):
        presets.load(str(path))
    # without the axis, a width in [settings] still names the configuration
    path.write_text('[matrix]\nsize = ["small"]\n[settings]\nwidth = 2\n')
    assert [c.key for c in presets.load(str(path)).configs] == ["synthetic/small-x2/scratch/baseline"]


def test_the_gpu_preset():
    from engine.orchestrate import presets

    preset = presets.load("gpu")
    specs = list(preset.specs.values())
    assert {s.width for s in specs} == {1.0, 16.0} and {s.device for s in specs} == {"cuda"}
    assert {s.amp for s in specs} == {False, True} and all(s.cooldown_s > 0 for s in specs)
