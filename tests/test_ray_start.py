"""`puls serve --ray` survives one slow Ray start: the failed start's processes are killed
and Ray is started once more. The real `ray.init` path is test_ray_serve.py's HTTP test;
here `init` starts real child processes, as Ray's GCS and raylet are."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from serving.ray_start import RAY_START_TIMEOUT, start_local_ray

pytestmark = pytest.mark.unit

RAY_ERROR = Exception(
    f"{RAY_START_TIMEOUT}. This could happen because some of the raylet failed to startup or "
    "the GCS has become overloaded."
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


def test_a_ray_start_timeout_is_cleaned_up_and_retried_once(processes: list) -> None:
    earlier = subprocess.Popen(["sleep", "300"])  # not Ray's: must survive the clean-up
    processes.append(earlier)
    start = FlakyStart([RAY_ERROR, None], processes)
    start_local_ray(start)
    failed, retried = processes[1], processes[2]
    assert failed.wait(timeout=10) is not None  # killed
    assert retried.poll() is None and earlier.poll() is None


def test_a_second_timeout_is_raised(processes: list) -> None:
    with pytest.raises(Exception, match=RAY_START_TIMEOUT):
        start_local_ray(FlakyStart([RAY_ERROR, RAY_ERROR], processes))
    assert len(processes) == 2
    assert all(process.wait(timeout=10) is not None for process in processes)


def test_other_errors_are_not_retried(processes: list) -> None:
    with pytest.raises(ValueError, match="address in use"):
        start_local_ray(FlakyStart([ValueError("address in use"), None], processes))
    assert len(processes) == 1
