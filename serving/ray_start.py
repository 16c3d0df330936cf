"""Starting the local Ray cluster of `puls serve --ray`, with one retry for a slow start.

Ray waits a hard-coded 30 s for its raylet to register with the GCS (`ray/_private/node.py`,
`raylet_start_wait_time_s`) and then raises "The current node timed out during startup".
It usually takes 4-10 s here, but a cold or busy node can miss the 30 s once (it happened
on a fresh CI machine). The processes of the failed start are killed, then Ray is started
once more; any other error, or a second timeout, is raised as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psutil
from tenacity import RetryCallState, Retrying, retry_if_exception_message, stop_after_attempt

logger = logging.getLogger(__name__)

RAY_START_ATTEMPTS = 2
RAY_START_TIMEOUT = "The current node timed out during startup"


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _kill_new_children(before: set[int]) -> None:
    """Kill the processes a failed start left (GCS, raylet, agents), not ones we had before."""
    started = [psutil.Process(pid) for pid in _children() - before if psutil.pid_exists(pid)]
    for process in started:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(started, timeout=10)


def start_local_ray(init: Callable[[], object]) -> None:
    """Call `init` (a `ray.init` with our options); after Ray's startup timeout, clean up and
    call it once more."""
    before = _children()

    def clean_up(state: RetryCallState) -> None:
        attempt = state.attempt_number
        logger.warning(
            "Ray's node did not start in 30 s (attempt %d of %d)", attempt, RAY_START_ATTEMPTS
        )
        _kill_new_children(before)

    for attempt in Retrying(
        stop=stop_after_attempt(RAY_START_ATTEMPTS),
        retry=retry_if_exception_message(match=RAY_START_TIMEOUT),
        after=clean_up,
        reraise=True,
    ):
        with attempt:
            init()
