"""The thermal drift guard's band and wait (engine/thermal.py), with a fake clock."""

from engine.worker import thermal


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


BASE = {"power_w": 60.0, "temp_c": 35}


def test_band():
    assert thermal.outside_band({"power_w": 65.9, "temp_c": 38}, BASE) == []
    assert thermal.outside_band({"power_w": 66.1, "temp_c": 39}, BASE) == [
        "temperature 39 C > 35 + 3 C",
        "idle power 66.1 W > 66.0 W",
    ]
    assert thermal.outside_band({"power_w": 4.0}, {"power_w": 0.5}) == ["idle power 4.0 W > 3.5 W"]  # 3 W floor
    assert thermal.outside_band({"power_w": None, "temp_c": None}, BASE) == []  # unknown is not held against it


def test_waits_until_the_gpu_is_back_in_the_band():
    clock = Clock()
    temps = iter([60, 50, 41, 37, 36])
    result = thermal.cool_down(lambda: {"power_w": 61.0, "temp_c": next(temps)}, BASE, 30.0, clock.sleep, clock)
    assert result["started_warm"] is False and result["waited_s"] == 3.0
    assert result["at_start"]["temp_c"] == 60 and result["at_idle"]["temp_c"] == 37


def test_a_timeout_leaves_a_warm_start_on_record():
    clock = Clock()
    result = thermal.cool_down(lambda: {"power_w": 90.0, "temp_c": 35}, BASE, 2.5, clock.sleep, clock)
    assert result["started_warm"] is True and result["waited_s"] == 2.5
    assert result["why_warm"] == ["idle power 90.0 W > 66.0 W"]
    # cooldown off: no wait, but the warm start is still said
    result = thermal.cool_down(lambda: {"power_w": 90.0, "temp_c": 35}, BASE, 0.0, clock.sleep, clock)
    assert result["started_warm"] is True and result["waited_s"] == 0.0
    # no baseline yet (the first run on this GPU): nothing to compare with
    assert thermal.cool_down(lambda: {"power_w": 90.0}, None, 10.0, clock.sleep, clock)["started_warm"] is False


def test_baseline_kept_per_gpu_uuid(tmp_path):
    assert thermal.load_baseline("GPU-a", tmp_path) is None
    assert thermal.save_baseline("GPU-a", {"power_w": 61.5, "temp_c": 34}, "run1", tmp_path) is None
    assert thermal.load_baseline("GPU-a", tmp_path)["power_w"] == 61.5
    assert thermal.load_baseline("GPU-b", tmp_path) is None
