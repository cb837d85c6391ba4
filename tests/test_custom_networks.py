"""Networks of the user's own (engine.worker.networks): a factory named in a preset runs the
study (transfer vs scratch through the CLI, then compare's verdict); one that raises, returns no
module or has no head fails before any metered phase with one line."""

import json
import textwrap

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from engine.cli import app
from engine.worker.networks import UserNetworkError, build_user_network

runner = CliRunner()

NETS = textwrap.dedent(
    """
    from torch import nn

    class Tiny(nn.Module):  # marks its parts as body and head
        def __init__(self, channels, n_classes):
            super().__init__()
            conv = nn.Conv1d(channels, 4, 3, padding=1)
            self.body = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool1d(2), nn.Flatten())
            self.head = nn.Linear(8, n_classes)

        def forward(self, x):
            return self.head(self.body(x))

    def tiny(input_shape, n_classes, size, width):
        return Tiny(input_shape[0], n_classes)

    def marked(input_shape, n_classes, size, width):  # names its head in joulelab_head
        flat = input_shape[0] * input_shape[1]
        net = nn.Sequential(nn.Flatten(), nn.Linear(flat, 6), nn.ReLU(), nn.Linear(6, n_classes))
        net.joulelab_head = "3"
        return net

    def raises(input_shape, n_classes, size, width):
        raise ValueError("no such size")

    def not_a_module(input_shape, n_classes, size, width):
        return [1, 2]

    def headless(input_shape, n_classes, size, width):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1], n_classes))
    """
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A folder with a factory module, a custom windows dataset and a preset naming both."""
    root = tmp_path_factory.mktemp("own")
    (root / "nets.py").write_text(NETS)
    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(4), 30)
    x = (rng.normal(size=(len(label), 2, 16)) + label[:, None, None]).astype(np.float32)
    folder = root / "data" / "custom" / "wave"
    folder.mkdir(parents=True)
    np.savez(folder / "data.npz", x=x, label=label, time=np.tile(np.arange(30) * 4, 4))
    return root


def preset(root, models, modes=("transfer", "scratch")):
    path = root / f"p{len(list(root.glob('p*.toml')))}.toml"
    path.write_text(
        f"[matrix]\ndataset = ['wave']\nmodel = {json.dumps(models)}\nmode = {json.dumps(list(modes))}\n"
        "[settings]\nepochs = 2\nidle_s = 0.1\ntest_min_s = 0\nsample_hz = 20.0\n"
    )
    return path


@pytest.mark.parametrize(
    ("factory", "says"),
    [
        ("raises", "the factory raised ValueError: no such size; fix factory(input_shape, n_classes, size, width)"),
        ("not_a_module", "the factory returned a list, not a torch.nn.Module; return the network"),
        ("headless", "the network has no head; give the module attributes body and head, or a joulelab_head"),
    ],
)
def test_a_factory_that_cannot_be_used_is_one_line(lab, monkeypatch, factory, says):
    with pytest.raises(UserNetworkError) as caught:
        build_user_network(f"nets:{factory}", (2, 16), 3, "small", 1.0, str(lab))
    assert str(caught.value).startswith(f"model 'nets:{factory}': {says}")


@pytest.mark.parametrize("factory", ["tiny", "marked"])
def test_a_marked_head_is_replaced_extended_and_the_body_frozen(lab, factory):
    from engine.worker.models import count_parameters, flops_per_sample
    from engine.worker.train import prune_global

    net = build_user_network(f"nets:{factory}", (2, 16), 3, "small", 1.0, str(lab))
    net.extend_head(5)
    net.freeze_body()
    assert net(torch.zeros(4, 2, 16)).shape == (4, 5)
    trainable = count_parameters(net, trainable_only=True)
    assert 0 < trainable < count_parameters(net)
    assert flops_per_sample(net, (2, 16)) > 0
    assert prune_global(net, 0.5)["zero_weights"] > 0  # only the new head's weights are pruned
    net.replace_head(2)
    assert net(torch.zeros(1, 2, 16)).shape == (1, 2)


@pytest.mark.slow
def test_transfer_vs_scratch_on_own_data_and_network_through_the_cli(lab, monkeypatch):
    monkeypatch.chdir(lab)
    logs = lab / "logs-ok"
    result = runner.invoke(app, ["run", str(preset(lab, ["nets:tiny"])), "--data-dir", "data", "--logs", str(logs)])
    assert result.exit_code == 0, result.output
    assert f"network tiny: your code, nets:tiny, imported by each worker from {lab}" in result.output
    compared = runner.invoke(app, ["compare", "--last", "--logs", str(logs)])
    assert compared.exit_code == 0, compared.output
    assert "wave/tiny-small" in compared.output and "transfer vs scratch" in compared.output
    assert "wave/tiny-small/baseline:" in compared.output  # the verdict line


@pytest.mark.slow
def test_a_bad_factory_fails_before_any_metered_phase(lab, monkeypatch):
    monkeypatch.chdir(lab)
    logs = lab / "logs-bad"
    models = ["nets:raises", "nets:not_a_module", "nets:headless"]
    result = runner.invoke(
        app, ["run", str(preset(lab, models, ["scratch"])), "--data-dir", "data", "--logs", str(logs)]
    )
    assert result.exit_code == 2, result.output
    summaries = [json.loads(p.read_text()) for p in logs.glob("*/summary.json")]
    assert len(summaries) == 3
    for s in summaries:
        assert s["status"] == "failed" and s["phases"] == {} and s["last_phase"] is None
        assert s["error"].startswith("model 'nets:") and "\n" not in s["error"]


def test_no_batchnorm_on_a_user_network_is_refused_in_one_line():
    # JouleLab cannot remove batch norm from a network it did not build: the mechanism would
    # compare two identical networks
    from engine.core.spec import RunSpec, SpecError

    with pytest.raises(SpecError, match=r"^batchnorm = false \(no-batchnorm\) with model 'nets:tiny'"):
        RunSpec(model="nets:tiny", batchnorm=False)


def test_two_networks_of_one_factory_name_are_refused_not_merged(tmp_path):
    # keys name a user network by its factory; two modules' `net` would silently be one configuration
    from engine.orchestrate import presets
    from engine.orchestrate.presets import PresetError

    path = preset(tmp_path, ["a.nets:net", "b.nets:net"])
    with pytest.raises(PresetError, match=r"'a.nets:net' and 'b.nets:net' have the same factory name"):
        presets.load(str(path))
