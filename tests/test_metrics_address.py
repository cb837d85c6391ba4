"""--metrics-addr that this machine cannot bind is named as the address's problem, not the port's."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.outputs.prometheus import MetricsError, MetricsServer
from tests.helpers import preset_file

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("addr", "said"),
    [
        ("999.1.1.1", "is not an IP address or a host name"),
        ("no such host.invalid", "is not an IP address or a host name"),
        ("10.255.255.1", "is not an address of this machine"),
    ],
)
def test_a_bad_metrics_address_names_the_address(addr, said):
    with pytest.raises(MetricsError) as caught:
        MetricsServer(free_port(), addr).start()
    message = str(caught.value)
    assert said in message and "--metrics-addr" in message and "--metrics-port" not in message


def test_a_taken_port_still_says_choose_another_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MetricsError, match="choose another --metrics-port"):
            MetricsServer(taken.getsockname()[1], "127.0.0.1").start()


def test_run_with_a_bad_metrics_address_is_one_line_about_the_address(tmp_path):
    logs = tmp_path / "logs"
    args = ["run", str(preset_file(tmp_path)), "--logs", str(logs), "--metrics-port", str(free_port())]
    result = runner.invoke(app, [*args, "--metrics-addr", "999.1.1.1"])
    assert result.exit_code == 2
    assert "--metrics-addr '999.1.1.1' is not an IP address" in result.stderr
    assert "--metrics-port" not in result.stderr.replace("--metrics-port " + args[-1], "")
    assert "Traceback" not in result.output and not list(logs.glob("*/run.json"))
