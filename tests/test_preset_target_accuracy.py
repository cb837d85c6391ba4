"""A preset's [preset] target_accuracy: checked as `compare --target-accuracy` is, and carried to the
lab's plan so its Results tab shows the energy to it."""

from pathlib import Path

import pytest

from engine.orchestrate.presets import PresetError, load
from tui.lab_plan import preset_plan

MINI = '[preset]\nname = "mini"\n{head}\n[matrix]\nmode = ["transfer", "scratch"]\n[settings]\nepochs = 1\n'


def write(tmp_path: Path, head: str) -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(MINI.format(head=head))
    return path


def test_a_presets_target_reaches_the_lab_plan(tmp_path: Path) -> None:
    path = write(tmp_path, "target_accuracy = 0.9")
    assert load(str(path)).target_accuracy == 0.9
    assert preset_plan(path, logs_dir=tmp_path / "logs").target_accuracy == 0.9
    assert load(str(write(tmp_path, ""))).target_accuracy is None  # optional


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("90", "expected a fraction of 1 in (0, 1], such as 0.9 for 90 %; got 90 (for 90 % write 0.9)"),
        ("0", "expected a fraction of 1 in (0, 1]"),
        ("1.5", "expected a fraction of 1 in (0, 1]"),
        ("true", "expected a number such as 0.9, got True"),
        ('"0.9"', "expected a number such as 0.9, got '0.9'"),
    ],
)
def test_a_bad_target_is_one_line_naming_the_file_and_key(tmp_path: Path, value: str, says: str) -> None:
    path = write(tmp_path, f"target_accuracy = {value}")
    with pytest.raises(PresetError) as info:
        load(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: [preset] target_accuracy: ") and says in message and "\n" not in message
