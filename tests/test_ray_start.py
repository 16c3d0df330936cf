"""`puls serve --ray` survives slow Ray starts: a failed start's processes are killed and
Ray is started again. The real `ray.init` path is test_ray_serve.py's HTTP test;
here `init` starts real child processes, as Ray's GCS and raylet are."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from serving.ray_start import RAY_START_ATTEMPTS, start_local_ray

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
    from serving.ray_start import ray_serve_env

    script = (
        "from ray.serve._private import constants as c; "
        "print(c.RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD, c.RAY_SERVE_ENABLE_HA_PROXY, "
        "c.RAY_SERVE_PROXY_USE_GRPC)"
    )
    env = {"PATH": "/usr/bin:/bin", **ray_serve_env(haproxy)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    # gRPC from Serve's proxy to the replica; with HAProxy there is no such proxy
    assert out.stdout.split() == ["False", str(haproxy), str(not haproxy)]
