from pathlib import Path

import pytest

from engine.orchestrate import presets
from engine.orchestrate.presets import PresetError, filter_plan, parse_only


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.toml"
    p.write_text(text)
    return p


def test_quick_preset_expands_to_transfer_and_scratch():
    preset = presets.load("quick")
    assert {c.mode for c in preset.configs} == {"transfer", "scratch"}
    plan = preset.plan()
    assert len(plan) == 2
    assert all(p.spec.preset == "quick" and p.spec.dataset == "synthetic" for p in plan)


def test_matrix_trials_overrides_and_order(tmp_path):
    path = write(
        tmp_path,
        """
[preset]
trials = 3
[matrix]
size = ["small", "big"]
mode = ["transfer", "scratch"]
[settings]
epochs = 2
seed = 10
[[override]]
match = { size = "big" }
epochs = 5
""",
    )
    with pytest.raises(PresetError, match="'seed' is set by the matrix"):
        presets.load(str(path))
    path.write_text(path.read_text().replace("seed = 10\n", ""))
    preset = presets.load(str(path))
    plan = preset.plan()
    assert len(plan) == 2 * 2 * 3
    # paired modes run next to each other, trial by trial
    assert [(p.config.size, p.config.mode, p.spec.seed) for p in plan[:4]] == [
        ("small", "transfer", 0),
        ("small", "scratch", 0),
        ("small", "transfer", 1),
        ("small", "scratch", 1),
    ]
    assert {p.spec.epochs for p in plan if p.config.size == "big"} == {5}
    assert {p.spec.epochs for p in plan if p.config.size == "small"} == {2}
    assert len(preset.plan(trials=1)) == 4
    only = filter_plan(plan, parse_only(["size=big", "mode=scratch"]))
    assert len(only) == 3 and all(p.config.key == "synthetic/big/scratch/baseline" for p in only)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty preset"),
        ("[matrix\n", "not valid TOML"),
        ("[matrx]\nsize=['small']", "unknown table 'matrx' (did you mean 'matrix'?)"),
        ("[matrix]\nsize = ['huge']", "[matrix] size: 'huge' is not one of small, big"),
        ("[matrix]\nmode = []", "[matrix] mode: expected a non-empty list"),
        ("[matrix]\nmode = ['scratch']\n[settings]\nepochs = 0", "epochs: 0 must be >= 1"),
        ("[matrix]\nmode = ['scratch']\n[settings]\nepoch = 2", "unknown key 'epoch' (did you mean 'epochs'?)"),
        ("[matrix]\nmode = ['scratch']\n[settings]\nepochs = 'two'", "epochs: expected an integer, got 'two'"),
        ("[preset]\ntrials = 0\n[matrix]\nmode = ['scratch']", "trials: expected an integer 1-1000"),
        ("[matrix]\nmechanism = ['prunning']", "did you mean 'pruning'?"),
        ("[matrix]\nmode=['scratch']\n[[override]]\nepochs = 3", "needs match"),
        ("matrix = 3", "matrix must be a table"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(PresetError) as info:
        presets.load(str(path))
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_preset_name_suggests():
    with pytest.raises(PresetError, match="did you mean 'quick'"):
        presets.load("quik")


def test_every_shipped_preset_loads_and_says_what_it_answers():
    for path in presets.available():
        preset = presets.load(str(path))
        assert preset.plan()
        assert path.read_text().startswith("#"), f"{path} must start with a comment"
