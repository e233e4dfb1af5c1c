"""Start, find and stop the sandbox server as a background process.

Where it runs is recorded in ``$AWSOPS_HOME/sandbox.json`` (default ``~/.awsops``), so
``awsops --sandbox ...`` in another shell finds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from awsops.errors import UsageError
from awsops.sandbox.serverfaults import parse_faults

SANDBOX_ACCESS_KEY = "testing"
SANDBOX_SECRET_KEY = "testing"
SANDBOX_ACCOUNT = "123456789012"
SANDBOX_REGION = "us-east-1"
START_TIMEOUT = 60.0
READY_FILE = "sandbox.ready"


def home() -> Path:
    """The awsops state directory (``AWSOPS_HOME`` or ``~/.awsops``), private (0700)."""
    from awsops.home import home as private_home

    return private_home()


@dataclass(frozen=True)
class SandboxState:
    """Where a sandbox runs. ``endpoint`` is what clients use (the fault proxy if any)."""

    pid: int
    host: str
    port: int
    started_at: float
    log_file: str
    proxy_pid: int | None = None
    proxy_port: int | None = None
    faults: str | None = None

    @property
    def server_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        if self.proxy_port:
            return f"http://{self.host}:{self.proxy_port}"
        return self.server_url


def _state_file() -> Path:
    return home() / "sandbox.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The server's health answer, or None if nothing answers at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/_awsops/health", timeout=timeout) as resp:
            return dict(json.loads(resp.read()))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def control(
    url: str,
    action: str,
    payload: Any,
    timeout: float = 300.0,
    method: str = "POST",
) -> Any:
    """Send a control request (JSON ``payload``, none for GET) to the sandbox server;
    raise UsageError on failure."""
    data = None if method == "GET" else json.dumps(payload).encode()
    req = urllib.request.Request(
        f"{url}/_awsops/{action}",
        data=data,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = str(json.loads(detail)["error"])
        raise UsageError(f"sandbox control {action} failed: {detail}") from None
    except OSError as exc:
        raise UsageError(f"sandbox not reachable at {url}: {exc}") from None


def reset(url: str) -> None:
    """Forget every resource in the sandbox (moto's reset API)."""
    req = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def spawn_server(
    host: str, port: int, log_path: Path, ready_file: Path, faults: str = ""
) -> subprocess.Popen[bytes]:
    """Start the server process detached from this one, with the server fault settings
    ``faults`` (see :class:`~awsops.sandbox.serverfaults.ServerFaults`); return once it
    answers."""
    with contextlib.suppress(FileNotFoundError):
        ready_file.unlink()
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "awsops.sandbox.server",
                "--host",
                host,
                "--port",
                str(port),
                "--ready-file",
                str(ready_file),
                "--faults",
                faults,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"sandbox server exited at start: {tail[0]}")
        if ready_file.exists():
            info = json.loads(ready_file.read_text())
            if health(f"http://{host}:{info['port']}"):
                return proc
        time.sleep(0.05)
    proc.kill()
    raise UsageError(f"sandbox server did not start within {START_TIMEOUT:.0f}s (see {log_path})")


def _read_record() -> SandboxState | None:
    try:
        return SandboxState(**json.loads(_state_file().read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def read_state() -> SandboxState | None:
    """The recorded sandbox, if its process still runs."""
    state = _read_record()
    if state is None or not _alive(state.pid):
        return None
    return state


SANDBOX_EXTRA = "pip install 'awsops[sandbox]'"


def require_moto() -> None:
    """The sandbox runs moto; it is an optional extra (the library does not need it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("moto")
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise UsageError(f"the sandbox needs moto, which is not installed: {SANDBOX_EXTRA}")


def up(port: int = 0, host: str = "127.0.0.1", faults: str | None = None) -> SandboxState:
    """Start the sandbox (or return the running one). ``port`` 0 picks a free port.

    ``faults`` mixes the server's fault settings (backups, credentials) and the fault
    proxy's; the proxy is started only if the spec has proxy keys. A bad spec raises a
    UsageError before anything starts.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError("the sandbox only listens on loopback (127.0.0.1, localhost or ::1)")
    require_moto()
    proxy_spec, server_spec = parse_faults(faults)
    current = read_state()
    if current is not None and health(current.server_url):
        if faults and faults != current.faults:
            raise UsageError(
                f"a sandbox is already running (faults: {current.faults or 'none'}): "
                "stop it first with `awsops sandbox down`"
            )
        return current
    base = home()
    ready = base / READY_FILE
    log_path = base / "sandbox.log"
    proc = spawn_server(host, port, log_path, ready, str(server_spec))
    info = json.loads(ready.read_text())
    proxy_pid = proxy_port = None
    if str(proxy_spec):
        from awsops.sandbox.faults import spawn_proxy

        try:
            proxy_pid, proxy_port = spawn_proxy(
                f"http://{host}:{info['port']}", str(proxy_spec), base
            )
        except UsageError:
            _terminate(proc.pid)
            raise
    state = SandboxState(
        pid=proc.pid,
        host=host,
        port=int(info["port"]),
        started_at=time.time(),
        log_file=str(log_path),
        proxy_pid=proxy_pid,
        proxy_port=proxy_port,
        faults=faults or None,
    )
    _state_file().write_text(json.dumps(asdict(state)))
    return state


def _terminate(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> list[str]:
    """A process's command line (Linux ``/proc``); empty if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _is_ours(pid: int, answered_pid: Any, module: str, ready_file: Path) -> bool:
    """Whether ``pid`` is the sandbox process this home started: it answers at the
    recorded address with its pid, or its command line runs ``module`` with this home's
    ready file. A recycled pid (an unrelated process) is neither."""
    if answered_pid == pid:
        return True
    command = _cmdline(pid)
    return module in command and str(ready_file) in command


@dataclass(frozen=True)
class Shutdown:
    """What ``down`` did: the record it found, the pids it stopped, and the recorded
    pids it left alone because they are not the sandbox (a stale record)."""

    state: SandboxState | None
    stopped: tuple[int, ...] = ()
    left_alone: tuple[int, ...] = ()


def down() -> Shutdown:
    """Stop the recorded sandbox (server and fault proxy), but only processes that are
    verifiably the sandbox; forget the record in any case."""
    state = _read_record()
    stopped: list[int] = []
    left_alone: list[int] = []
    if state is not None:
        base = home()
        checks: list[tuple[int | None, Any, str, Path]] = []
        if state.proxy_pid:
            from awsops.sandbox.faults import READY_NAME, fetch_stats

            answer = fetch_stats(state.endpoint, timeout=2.0) if state.proxy_port else None
            pid_seen = (answer or {}).get("pid")
            checks.append((state.proxy_pid, pid_seen, "awsops.sandbox.faults", base / READY_NAME))
        server_seen = (health(state.server_url) or {}).get("pid")
        checks.append((state.pid, server_seen, "awsops.sandbox.server", base / READY_FILE))
        for pid, seen, module, ready in checks:
            if pid is None or pid in stopped or pid in left_alone or not _alive(pid):
                continue
            if _is_ours(pid, seen, module, ready):
                _terminate(pid)
                stopped.append(pid)
            else:
                left_alone.append(pid)
    with contextlib.suppress(FileNotFoundError):
        _state_file().unlink()
    return Shutdown(state, tuple(stopped), tuple(left_alone))


def require() -> SandboxState:
    """The running sandbox, or a one-line UsageError telling how to start it."""
    state = read_state()
    if state is None or not health(state.server_url):
        raise UsageError("no sandbox is running: start it with `awsops sandbox up`")
    return state


def sandbox_factory(region: str | None = None) -> Any:
    """A :class:`~awsops.session.SessionFactory` for the running sandbox: its endpoint
    and its dummy credentials (what ``awsops --sandbox`` uses)."""
    from awsops.config import ClientSettings
    from awsops.session import SessionFactory

    state = require()
    return SessionFactory(
        region=region or SANDBOX_REGION,
        settings=ClientSettings(endpoint_url=state.endpoint),
        static_credentials=(SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY),
    )
