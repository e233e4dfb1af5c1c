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

SANDBOX_ACCESS_KEY = "testing"
SANDBOX_SECRET_KEY = "testing"
SANDBOX_ACCOUNT = "123456789012"
SANDBOX_REGION = "us-east-1"
START_TIMEOUT = 60.0


def home() -> Path:
    """The awsops state directory (``AWSOPS_HOME`` or ``~/.awsops``)."""
    path = Path(os.environ.get("AWSOPS_HOME") or Path.home() / ".awsops")
    path.mkdir(parents=True, exist_ok=True)
    return path


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


def control(url: str, action: str, payload: dict[str, Any], timeout: float = 300.0) -> Any:
    """POST a control request to the sandbox server; raise UsageError on failure."""
    req = urllib.request.Request(
        f"{url}/_awsops/{action}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise UsageError(f"sandbox control {action} failed: {detail}") from None
    except OSError as exc:
        raise UsageError(f"sandbox not reachable at {url}: {exc}") from None


def reset(url: str) -> None:
    """Forget every resource in the sandbox (moto's reset API)."""
    req = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def spawn_server(host: str, port: int, log_path: Path, ready_file: Path) -> subprocess.Popen[bytes]:
    """Start the server process detached from this one; return once it answers."""
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


def read_state() -> SandboxState | None:
    """The recorded sandbox, if its process still runs."""
    path = _state_file()
    try:
        data = json.loads(path.read_text())
        state = SandboxState(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if not _alive(state.pid):
        return None
    return state


def up(port: int = 0, host: str = "127.0.0.1", faults: str | None = None) -> SandboxState:
    """Start the sandbox (or return the running one). ``port`` 0 picks a free port."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError("the sandbox only listens on loopback (127.0.0.1, localhost or ::1)")
    current = read_state()
    if current is not None and health(current.server_url):
        return current
    base = home()
    ready = base / "sandbox.ready"
    log_path = base / "sandbox.log"
    proc = spawn_server(host, port, log_path, ready)
    info = json.loads(ready.read_text())
    proxy_pid = proxy_port = None
    if faults:
        from awsops.sandbox.faults import spawn_proxy

        proxy_pid, proxy_port = spawn_proxy(f"http://{host}:{info['port']}", faults, base)
    state = SandboxState(
        pid=proc.pid,
        host=host,
        port=int(info["port"]),
        started_at=time.time(),
        log_file=str(log_path),
        proxy_pid=proxy_pid,
        proxy_port=proxy_port,
        faults=faults,
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


def down() -> SandboxState | None:
    """Stop the recorded sandbox; returns what was stopped (None if nothing ran)."""
    state = read_state()
    if state is not None:
        if state.proxy_pid:
            _terminate(state.proxy_pid)
        _terminate(state.pid)
    with contextlib.suppress(FileNotFoundError):
        _state_file().unlink()
    return state


def require() -> SandboxState:
    """The running sandbox, or a one-line UsageError telling how to start it."""
    state = read_state()
    if state is None or not health(state.server_url):
        raise UsageError("no sandbox is running: start it with `awsops sandbox up`")
    return state
