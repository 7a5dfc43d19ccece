"""What every command shares: one flag style and one local Prefect server.

    mlip-autopipec <command> [options]          # the same as: python -m flows.<command> [options]
    mlip-autopipec server status|start|stop     # the local Prefect server (make stop)

Flags are dashed (`--test-fraction`, `--run-dir`); the output is always `--out`. An old spelling
(`--run_dir`, `--n_clusters`, or a command's old name for its output) still works for one release and
prints a one-line deprecation note on stderr.

With no Prefect API configured (neither `PREFECT_API_URL` nor a Prefect profile setting), a command
runs against one local server that the first command starts in the background (`prefect server`'s own
app, on 127.0.0.1 only, its database and log under PREFECT_HOME) and later commands find again. Its
UI address is printed at the start. A file lock makes two commands started at once share one server.
`MLIP_LOCAL_SERVER=0` keeps Prefect's own default instead: a temporary server per command.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlip_autopipec.processes import alive

STATE_FILE = "mlip-local-server.json"  # {pid, port, url} of the server this module started
LOCK_FILE = "mlip-local-server.lock"
LOG_FILE = "mlip-local-server.log"
PID_FILE = "server.pid"  # Prefect's own (`prefect server start --background`): `prefect server stop` works too
PREFERRED_PORT = 4200  # Prefect's default
START_TIMEOUT_S = float(os.environ.get("MLIP_LOCAL_SERVER_TIMEOUT", 180))  # first start: database migrations

COMMANDS = ["active_learning", "train", "label", "sample", "action_quality", "direct_sample", "render",
            "validate", "outbox", "ingest", "export"]


# -- one flag style -----------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    """argparse with dashed flags; `renames` maps old spellings to today's (a note on stderr)."""

    def __init__(self, *args, renames: dict[str, str] | None = None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.renames = dict(renames or {})

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self.modernize(args), namespace)

    def modernize(self, args: list[str]) -> list[str]:
        out = []
        for index, token in enumerate(args):
            if "--" in args[:index] or not token.startswith("--") or token == "--":
                out.append(token)
                continue
            name, eq, value = token.partition("=")
            new = self.renames.get(name) or self.renames.get(name.replace("_", "-"))
            if new is None and "_" in name and name.replace("_", "-") in self._option_string_actions:
                new = name.replace("_", "-")
            if new is not None and new != name:
                print(f"note: {name} is deprecated, use {new} (the old spelling goes in the next release)",
                      file=sys.stderr)
                name = new
            out.append(name + eq + value)
        return out


_invoked_as: str | None = None  # "mlip-autopipec" while main() dispatches a command


def parser(command: str, doc: str | None, renames: dict[str, str] | None = None) -> Parser:
    """The parser of `python -m flows.<command>` or `mlip-autopipec <command>`: its usage and help
    name the command the way the user called it."""
    prog = (f"{_invoked_as} {command.replace('_', '-')}" if _invoked_as
            else f"python -m flows.{command}")
    return Parser(prog=prog, description=doc, renames=renames)


# -- one local server ---------------------------------------------------------------------------

class LocalServerError(RuntimeError):
    """The local Prefect server did not start (the message names its log)."""


def configured_api_url() -> str | None:
    """The Prefect API this process would use: env, profile or in-process settings (a test harness)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def _home() -> Path:
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with _NO_PROXY.open(f"{url}/api/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _is_our_server(pid: int) -> bool:
    """The pid is alive and still a Prefect server (a state file outlives a reboot; pids are reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask ps
        done = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
        command = done.stdout
    return "prefect.server.api.server:create_app" in command


def _read_state(home: Path) -> dict | None:
    try:
        return json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _free_port() -> int:
    for port in (PREFERRED_PORT, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    with open(home / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# The launcher exits at once, so the server is nobody's child: killing the command (or its process
# tree) leaves the server for the next one, and it runs in a session of its own (Ctrl-C does not reach it).
_LAUNCHER = ("import subprocess, sys; log = open(sys.argv[1], 'ab'); "
             "p = subprocess.Popen(sys.argv[3:], cwd=sys.argv[2], stdin=subprocess.DEVNULL, stdout=log, "
             "stderr=log, start_new_session=True, close_fds=True); print(p.pid)")


def _launch(home: Path, port: int) -> int:
    import prefect

    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent),
               "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PREFECT__SERVER_FINAL="1", PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
               PREFECT_HOME=str(home))
    launched = subprocess.run([sys.executable, "-c", _LAUNCHER, str(home / LOG_FILE), str(home), *command],
                              env=env, capture_output=True, text=True, check=True)
    return int(launched.stdout.strip())


def _start(home: Path) -> dict:
    for _ in range(3):  # another program may take the port between the check and uvicorn's bind
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        offset = (home / LOG_FILE).stat().st_size if (home / LOG_FILE).exists() else 0
        pid = _launch(home, port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while alive(pid) and not _healthy(url, timeout=1.0) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _healthy(url):
            state = {"pid": pid, "port": port, "url": url, "started": time.time()}
            (home / STATE_FILE).write_text(json.dumps(state))
            (home / PID_FILE).write_text(str(pid))
            return state
        _kill(pid)
        with open(home / LOG_FILE, "rb") as log:
            log.seek(offset)
            tail = log.read().decode(errors="replace")[-2000:]
        if "address already in use" not in tail.lower():
            raise LocalServerError(f"the local Prefect server did not start within {START_TIMEOUT_S:.0f} s "
                                   f"(log: {home / LOG_FILE}):\n{tail}")
    raise LocalServerError(f"the local Prefect server found no free port (log: {home / LOG_FILE})")


def _kill(pid: int, timeout: float = 15.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # the server leads its own process group
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if not alive(pid):
            return


def _serving(state: dict | None) -> bool:
    """The recorded server is ours and answers: after ours died, another program (another user's
    server on a shared login node) may answer at its address."""
    return bool(state) and _is_our_server(state["pid"]) and _healthy(state["url"])


def local_server(start: bool = True) -> dict | None:
    """The running local server's state, started first if need be (and `start`)."""
    home = _home()
    state = _read_state(home)
    if _serving(state):
        return state
    with _locked(home):  # one starter at a time; the others wait here and then find its server
        state = _read_state(home)
        if _serving(state):
            return state
        if state and _is_our_server(state["pid"]):  # there but not answering: a moment, then replace it
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _healthy(state["url"]):
                time.sleep(0.5)
            if _healthy(state["url"]):
                return state
            _kill(state["pid"])
        (home / STATE_FILE).unlink(missing_ok=True)
        return _start(home) if start else None


def stop_local_server() -> bool:
    """Stop the local server this module started (under this PREFECT_HOME); False if none ran."""
    home = _home()
    with _locked(home):
        state = _read_state(home)
        if state is None:
            return False
        if _is_our_server(state["pid"]):
            _kill(state["pid"])
        (home / STATE_FILE).unlink(missing_ok=True)
        if (home / PID_FILE).exists() and (home / PID_FILE).read_text().strip() == str(state["pid"]):
            (home / PID_FILE).unlink()
        return True


@contextlib.contextmanager
def prefect_api() -> Iterator[str | None]:
    """The API for a command's flow runs: the configured one, else the local server (started if need
    be). Commands enter it after their input checks, so bad input fails without touching a server."""
    if configured_api_url() or os.environ.get("MLIP_LOCAL_SERVER", "1").lower() in ("0", "false", "no"):
        yield None
        return
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        state = local_server()
    except LocalServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    print(f"Prefect UI: {state['url']} (local server; `mlip-autopipec server stop` or `make stop` ends it)",
          file=sys.stderr, flush=True)
    os.environ["PREFECT_API_URL"] = state["url"] + "/api"  # subprocesses (Dask workers, trainings) too
    # Threads that carry no settings context of their own (Prefect's log shipping, a task's worker
    # threads) read the process-global one: without this they would start a temporary server.
    refresh_global_settings_context()
    try:
        with temporary_settings(updates={PREFECT_API_URL: state["url"] + "/api"}):
            yield state["url"]
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        refresh_global_settings_context()


_process_api: contextlib.ExitStack | None = None


def use_prefect_api() -> str | None:
    """prefect_api() for the rest of this process: one line for a command's main, after its input
    checks and before its first flow run. Later calls change nothing."""
    global _process_api
    if _process_api is not None:
        return None
    _process_api = contextlib.ExitStack()
    atexit.register(_process_api.close)
    return _process_api.enter_context(prefect_api())


# -- mlip-autopipec <command> -------------------------------------------------------------------

def server(argv: list[str], prog: str = "mlip-autopipec") -> int:
    cli = Parser(prog=f"{prog} server",
                 description="The local Prefect server that commands share (under PREFECT_HOME).")
    cli.add_argument("action", choices=["status", "start", "stop"])
    args = cli.parse_args(argv)
    if args.action == "stop":
        print("local Prefect server stopped" if stop_local_server() else "no local Prefect server is running")
        return 0
    configured = configured_api_url()
    if configured:
        print(f"PREFECT_API_URL is set ({configured}): commands use that server, not a local one")
        return 0
    state = local_server(start=args.action == "start")
    print(f"Prefect UI: {state['url']} (pid {state['pid']}, {_home()})" if state
          else "no local Prefect server is running")
    return 0


def main(argv: list[str] | None = None, prog: str = "mlip-autopipec") -> int:
    """`prog <command> [options]`; `prog` is how the user called us, shown in every command's usage."""
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = [name.replace("_", "-") for name in COMMANDS]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[0].strip() + "\n\ncommands: " + ", ".join(commands) + ", server")
        return 0 if argv else 2
    command, rest = argv[0].replace("_", "-"), argv[1:]
    if command == "server":
        return server(rest, prog)
    if command not in commands:
        print(f"error: unknown command {argv[0]!r}; one of: {', '.join(commands)}, server", file=sys.stderr)
        return 2
    global _invoked_as
    _invoked_as = prog
    try:
        return importlib.import_module(f"flows.{command.replace('-', '_')}").main(rest)
    finally:
        _invoked_as = None


if __name__ == "__main__":
    sys.exit(main(prog="python -m flows.cli"))
