"""Starting, watching and stopping the processes under test: fake upstreams and the gateway.

Each one runs as its own process, so its CPU time and peak memory can be read from /proc and
nothing of the load client is counted against it. Everything started here is registered in a
:class:`ProcessSet`, which stops what it holds on exit, on error and on Ctrl-C; the children
also get SIGTERM from the kernel if the benchmark itself dies (PR_SET_PDEATHSIG), so no run
leaves orphans behind.

Setup code here is synchronous on purpose: nothing else runs while processes start or stop, and
plain ``subprocess`` keeps the teardown working even while the event loop is being torn down.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from asyncio import CancelledError
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import yaml

if TYPE_CHECKING:
    from bench.routes import RouteSpec

REPO = Path(__file__).resolve().parents[1]
# PERFORMANCE.md: glibc hands large buffers back after every request, and faulting fresh pages
# in again was half of the gateway's CPU. These keep them in the process (the deployment setting).
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "16777216", "MALLOC_TRIM_THRESHOLD_": "268435456"}
_LISTENING = re.compile(r"listening on (http://\S+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters
_M_MMAP_THRESHOLD = -3
# Loopback only: an http_proxy in the environment must not capture the health probe.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StartError(RuntimeError):
    """A process did not come up; the message carries the tail of its log."""


@dataclass
class Proc:
    """One started process, its log file and the URL it serves."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, from /proc/PID/stat (clock-tick resolution)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / _CLK_TCK

    def status_kb(self, key: str) -> int:
        """A ``kB`` line of /proc/PID/status, e.g. VmHWM (peak RSS) or VmRSS."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
        raise KeyError(key)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise StartError(f"{self.name} exited with code {code}:\n{self.log_tail()}")

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after the grace period; only this process, by its id."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class ProcessSet:
    """Owns a scratch directory and every process started through it; a context manager."""

    keep_logs: bool = False
    procs: list[Proc] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="imagegate-bench-")))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        crashed = exc is not None and not isinstance(exc, KeyboardInterrupt | CancelledError)
        if crashed or self.keep_logs:
            # The processes' logs explain most crashes; keep them and say where.
            print(f"logs and configs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_all(self) -> None:
        # Gateway first (it was started last), so the fake never sees a client vanish mid-stop.
        while self.procs:
            self.procs.pop().stop()

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name}-{len(self.procs)}-{time.monotonic_ns()}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches only the benchmark, which then
                # stops the children in order instead of racing them to the exit.
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run at this point
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_fake(
        self, kind: str, key: str, hold_seconds: float = 0.0, timeout: float = 30.0
    ) -> Proc:
        """``python -m tests.fakes.<kind>`` on a free port; ready once it prints its URL."""
        argv = [sys.executable, "-m", f"tests.fakes.{kind}", "--host", "127.0.0.1"]
        argv += ["--port", str(free_port()), "--keys", key, "--hold-seconds", str(hold_seconds)]
        proc = self.spawn(f"fake-{kind}", argv)
        proc.url = _wait_for_url(proc, timeout)
        return proc

    def start_gateway(
        self,
        settings: Mapping[str, Any],
        env: Mapping[str, str],
        timeout: float = 30.0,
        wrapper: Sequence[str] = (),
    ) -> Proc:
        """``imagegate serve`` with this config and the allocator settings; ready on /healthz.

        `wrapper` goes before the command (``valgrind --tool=callgrind ...``: same pid)."""
        port = free_port()
        data_dir = self.workdir / f"data-{port}"
        config = {**settings, "server": {"host": "127.0.0.1", "port": port, "data_dir": data_dir}}
        config_path = self.workdir / f"gateway-{port}.yaml"
        config_path.write_text(yaml.safe_dump(_plain(config), sort_keys=False))
        argv = [*wrapper, _imagegate_exe(), "serve", "--config", str(config_path)]
        argv += ["--port", str(port)]
        proc = self.spawn("gateway", argv, env={**ALLOCATOR_ENV, **env})
        proc.url = f"http://127.0.0.1:{port}"
        _wait_for_health(proc, f"{proc.url}/healthz", timeout)
        return proc

    def start_reference(
        self,
        spec: RouteSpec,
        upstream_url: str,
        key: str,
        timeout: float = 30.0,
        wrapper: Sequence[str] = (),
    ) -> Proc:
        """bench/reference_gateway.py for `spec`'s route, with the gateway's allocator settings."""
        port = free_port()
        argv = [*wrapper, sys.executable, str(REPO / "bench" / "reference_gateway.py")]
        argv += ["--port", str(port), "--upstream", upstream_url, "--kind", spec.provider_kind]
        argv += ["--key", key, "--model", spec.model]
        proc = self.spawn("reference", argv, env=ALLOCATOR_ENV)
        proc.url = f"http://127.0.0.1:{port}"
        _wait_for_health(proc, f"{proc.url}/healthz", timeout)
        return proc


def revision_source(rev: str, workdir: Path) -> dict[str, str]:
    """Unpack ``src/`` of a git revision and put it first on the gateway's PYTHONPATH.

    Lets a run measure committed code while the working tree is half-way through a change, or
    two revisions side by side (bench/ab.py). Returns the gateway's extra environment.
    """
    archive = workdir / "gateway-src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", rev, "src"], cwd=REPO, stdout=out, check=True)
    target = workdir / "gateway-src"
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return {"PYTHONPATH": str(target / "src")}


def check_config(settings: Mapping[str, Any], workdir: Path, env: Mapping[str, str]) -> str | None:
    """None when ``imagegate check-config`` accepts these settings, else its complaint."""
    path = workdir / "probe.yaml"
    path.write_text(yaml.safe_dump(_plain(settings), sort_keys=False))
    done = subprocess.run(
        [_imagegate_exe(), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # Wide columns: the complaint is quoted in the report, unwrapped.
        env={**os.environ, **env, "COLUMNS": "200"},
    )
    return None if done.returncode == 0 else (done.stdout + done.stderr).strip()


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` (0: this process) onto `cpus`; threads started later inherit it."""
    tasks = Path(f"/proc/{pid or os.getpid()}/task")
    for tid in tasks.iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid.name), cpus)


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds all processes spent since boot, from /proc/stat: (tasks, tasks + irqs).

    Tasks = user + nice + system; the second adds irq, softirq and steal, where part of the
    loopback networking is booked. Over a phase, tasks minus the benchmark's own processes is
    what other programs on the machine took from it.
    """
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tasks = (user + nice + system) / _CLK_TCK
    return tasks, tasks + (irq + softirq + steal) / _CLK_TCK


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests while this one wanted them (/proc/stat
    `steal`), since boot. On a shared VM a phase with steal ran on less machine than it seems."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / _CLK_TCK


def speed_reference_ms(rounds: int = 5) -> float:
    """The best of `rounds` timings of a fixed piece of pure Python (~0.1 s on a fast core).

    This virtual machine runs the same code up to twice as slow at some hours than at others
    (steal does not show it all: neighbours share caches and memory bandwidth too). A run's
    figures are comparable with another's only together with this reference."""
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for value in range(1_000_000):
            total += value & 7
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: was the machine quiet around the run?"""
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_open_files_limit(wanted: int = 8192) -> int:
    """Lift the soft RLIMIT_NOFILE toward ``wanted``; children inherit it. Returns the limit.

    A burst of 500 holds ~500 sockets in the client, ~1000 in the gateway and ~500 in the fake.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def tune_own_allocator() -> bool:
    """Give this process (the load client) the gateway's allocator settings, via mallopt.

    The environment variables only work at process start; mallopt does the same later. Without
    it the client mmaps and unmaps each large socket read and its CPU per answer drifts over the
    run, which on 2 shared cores shifts CPU between the client and the servers under test.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, int(ALLOCATOR_ENV["MALLOC_MMAP_THRESHOLD_"]))
        trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, int(ALLOCATOR_ENV["MALLOC_TRIM_THRESHOLD_"]))
        return bool(mmap_ok and trim_ok)
    return False


def _die_with_parent() -> None:
    # If the benchmark is SIGKILLed its finally blocks never run; the kernel then TERMs the child.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _imagegate_exe() -> str:
    # The console script beside this interpreter execs Python directly: its pid is the gateway.
    beside = Path(sys.executable).with_name("imagegate")
    return str(beside) if beside.exists() else shutil.which("imagegate") or "imagegate"


def _plain(value: Any) -> Any:
    """Paths to strings, recursively, so the config dumps as plain YAML."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _wait_for_url(proc: Proc, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        found = _LISTENING.search(proc.log_path.read_text(errors="replace"))
        if found:
            return found.group(1).rstrip("/")
        time.sleep(0.05)
    raise StartError(f"{proc.name} printed no 'listening on' in {timeout} s:\n{proc.log_tail()}")


def _wait_for_health(proc: Proc, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            with _NO_PROXY.open(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise StartError(f"{proc.name} did not answer {url} in {timeout} s:\n{proc.log_tail()}")
