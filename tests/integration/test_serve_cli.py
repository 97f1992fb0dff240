"""``pvebot serve --host H --port P``: the flags win over ``PVEBOT_HTTP_HOST``/``PVEBOT_HTTP_PORT``.

Some tests really start ``pvebot serve`` in a child process: on a free loopback port, where it answers
``/healthz``, and on a port already taken or an address the machine lacks, which it says in one line (as
``pvebot worker`` does of a taken ``--metrics-port``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from adapters.crypto import generate_key
from bot import cli
from bot.config import Settings, cannot_listen
from bot.processes import serve_settings
from tests.support import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


def _serve_settings(argv: list[str], env: dict[str, str]) -> Settings:
    args = cli.build_parser().parse_args(argv)
    return serve_settings(args, Settings.from_mapping(env))


def test_without_flags_the_environment_decides() -> None:
    settings = _serve_settings(["serve"], {"PVEBOT_HTTP_HOST": "0.0.0.0", "PVEBOT_HTTP_PORT": "8080"})
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8080)
    defaults = _serve_settings(["serve"], {})
    assert (defaults.http_host, defaults.http_port) == ("127.0.0.1", 3000)


def test_the_flags_win_over_the_environment() -> None:
    settings = _serve_settings(["serve", "--host", "::1", "--port", "8443"],
                               {"PVEBOT_HTTP_HOST": "0.0.0.0", "PVEBOT_HTTP_PORT": "8080"})
    assert (settings.http_host, settings.http_port) == ("::1", 8443)
    only_port = _serve_settings(["serve", "--port", "9000"], {"PVEBOT_HTTP_HOST": "0.0.0.0"})
    assert (only_port.http_host, only_port.http_port) == ("0.0.0.0", 9000)


@pytest.mark.parametrize(("port", "why"), [("http", "'http' is not a port number"), ("0", "a port is from 1 to 65535"),
                                           ("65536", "a port is from 1 to 65535")])
def test_a_bad_port_flag_is_refused_by_the_parser(port: str, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.build_parser().parse_args(["serve", "--port", port])
    assert caught.value.code == 2
    assert f"argument --port: {why}" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "why"), [
    (["worker", "--metrics-port", "0"], "argument --metrics-port: a port is from 1 to 65535"),
    (["demo", "--task-seconds", "-1"], "argument --task-seconds: seconds are 0 or more"),
    (["demo", "--task-seconds", "nan"], "argument --task-seconds: seconds are 0 or more"),
    (["shell", "--as", "bob@acme.example", "--wait", "soon"], "argument --wait: 'soon' is not a number of seconds"),
])
def test_other_bad_flags_are_refused_by_the_parser(argv: list[str], why: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.build_parser().parse_args(argv)
    assert caught.value.code == 2
    assert why in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _healthz(url: str, process: subprocess.Popen[bytes], *, patience: float = 60.0) -> dict[str, str]:
    """Ask until the server answers; the deadline only bounds a start-up that never happens."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                answer: dict[str, str] = json.loads(response.read())
                return answer
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                pytest.fail(f"pvebot serve exited with {process.returncode}")
            if time.monotonic() > deadline:
                pytest.fail("pvebot serve did not answer /healthz")
            time.sleep(0.1)


def _serve_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PVEBOT_", "SLACK_", "MICROSOFT_"))}
    return {**env, "PVEBOT_DATA_DIR": str(tmp_path / "data"), "PVEBOT_SECRET_KEY": generate_key(),
            "PYTHONPATH": str(ROOT)}


def test_serve_listens_where_the_flags_say(tmp_path: Path) -> None:
    port, env_port = _free_port(), _free_port()
    env = {**_serve_env(tmp_path), "PVEBOT_HTTP_HOST": "0.0.0.0", "PVEBOT_HTTP_PORT": str(env_port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        assert _healthz(f"http://127.0.0.1:{port}/healthz", process) == {"status": "ok"}
        with pytest.raises(urllib.error.URLError):  # nothing on the environment's port: the flag won
            urllib.request.urlopen(f"http://127.0.0.1:{env_port}/healthz", timeout=2)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
    assert b"Traceback" not in err, err.decode(errors="replace")


def _pvebot(tmp_path: Path, *args: str) -> tuple[int, str]:
    """``pvebot <args>`` run to its end: (exit code, stderr)."""
    done = subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=tmp_path,
                          env={**_serve_env(tmp_path), "PVEBOT_REDIS_URL": REDIS_URL}, capture_output=True, timeout=60)
    return done.returncode, done.stderr.decode()


def _on_a_taken_port(tmp_path: Path, *args: str) -> tuple[int, int, str]:
    """``pvebot <args> <port>`` while something else listens on that port: (port, exit code, stderr)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        return (port, *_pvebot(tmp_path, *args, str(port)))


def test_a_port_already_taken_is_said_in_one_line(tmp_path: Path) -> None:
    port, code, err = _on_a_taken_port(tmp_path, "serve", "--port")
    assert code == 2
    assert (f"pvebot: PVEBOT_HTTP_PORT: cannot listen on 127.0.0.1:{port}: address already in use; "
            "choose another port (PVEBOT_HTTP_PORT or --port)") in err
    assert "Traceback" not in err and "serving on" not in err


@pytest.mark.redis
def test_a_workers_metrics_port_already_taken_is_said_in_one_line(tmp_path: Path) -> None:
    port, code, err = _on_a_taken_port(tmp_path, "worker", "--burst", "--metrics-port")
    assert code == 2
    assert (f"pvebot: --metrics-port: cannot listen on 127.0.0.1:{port}: address already in use; "
            "choose another port (--metrics-port)") in err
    assert "Traceback" not in err


def test_an_address_the_machine_lacks_is_said_in_one_line(tmp_path: Path) -> None:
    port = _free_port()
    code, err = _pvebot(tmp_path, "serve", "--host", "192.0.2.1", "--port", str(port))
    assert code == 2
    assert (f"pvebot: PVEBOT_HTTP_HOST: cannot listen on 192.0.2.1:{port}: cannot assign requested address; "
            "choose an address of this machine (PVEBOT_HTTP_HOST or --host)") in err
    assert "Traceback" not in err


def test_a_host_name_that_does_not_resolve_is_said_in_the_resolvers_words() -> None:
    error = cannot_listen("nosuch.invalid", 3000, socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
                          port_settings=("PVEBOT_HTTP_PORT",), host_settings=("PVEBOT_HTTP_HOST", "--host"))
    assert str(error) == ("PVEBOT_HTTP_HOST: cannot listen on nosuch.invalid:3000: name or service not known; "
                          "choose an address of this machine (PVEBOT_HTTP_HOST or --host)")

