"""One flag style and one local Prefect server shared by every command (flows/cli.py)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import cli
from flows import export as export_flow
from mlip_autopipec.processes import alive

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_old_spellings_still_work_with_a_note(capsys):
    parser = cli.parser("demo", None, renames={"--run-dir": "--out"})
    parser.add_argument("--out")
    parser.add_argument("--n-clusters", type=int)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args(["--run_dir", "r", "--n_clusters=3", "--", "--not_a_flag"])
    assert (args.out, args.n_clusters, args.files) == ("r", 3, ["--not_a_flag"])
    notes = capsys.readouterr().err.splitlines()
    assert notes == ["note: --run_dir is deprecated, use --out (the old spelling goes in the next release)",
                     "note: --n_clusters is deprecated, use --n-clusters (the old spelling goes in the next release)"]
    assert parser.parse_args(["--out", "x"]).out == "x" and capsys.readouterr().err == ""


def test_mlip_autopipec_dispatches_to_the_flows(capsys):
    assert cli.main(["--help"]) == 0
    assert "direct-sample" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        cli.main(["direct-sample", "--help"])
    assert exited.value.code == 0 and "--n-clusters" in capsys.readouterr().out
    assert cli.main(["no-such-command"]) == 2


@pytest.mark.parametrize(("argv", "prog", "usage"), [
    (["train", "--help"], "mlip-autopipec", "usage: mlip-autopipec train "),
    (["direct_sample", "--help"], "mlip-autopipec", "usage: mlip-autopipec direct-sample "),
    (["server", "--help"], "python -m flows.cli", "usage: python -m flows.cli server "),
])
def test_usage_names_the_command_as_it_was_called(argv, prog, usage, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv, prog=prog)
    assert exited.value.code == 0 and capsys.readouterr().out.startswith(usage)
    if argv[0] != "server":  # the same command run as a module names the module
        with pytest.raises(SystemExit):
            importlib.import_module(f"flows.{argv[0]}").main(["--help"])
        assert capsys.readouterr().out.startswith(f"usage: python -m flows.{argv[0]} ")


def test_a_configured_api_wins(monkeypatch):
    """The session's test harness sets PREFECT_API_URL through settings, not the environment."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert cli.configured_api_url()
    with cli.prefect_api() as url:
        assert url is None


def test_two_commands_at_once_share_one_local_server(tmp_path, shared_data):
    """No PREFECT_API_URL: the first command starts a server in the background, the other waits for
    it on the lock; both run their flows there; `server stop` ends it."""
    from mlip_autopipec.store import StructureStore
    from mlip_autopipec.store.ingest import ingest_file

    home = tmp_path / "prefect-home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(home)
    store = tmp_path / "s.db"
    ingest_file(StructureStore(store), shared_data / "Cu-I.extxyz")
    commands = [subprocess.Popen([sys.executable, "-m", "flows.export", "--store", str(store),
                                  "--out", str(tmp_path / f"out-{index}"), "--formats", "extxyz"],
                                 cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for index in range(2)]
    try:
        results = [command.communicate(timeout=400) for command in commands]
        assert [command.returncode for command in commands] == [0, 0], results
        state = json.loads((home / cli.STATE_FILE).read_text())
        assert state["url"].startswith("http://127.0.0.1:")
        for _, stderr in results:
            assert f"Prefect UI: {state['url']}" in stderr
        assert (home / cli.PID_FILE).read_text() == str(state["pid"])  # `prefect server stop` works too
        assert all("exported" in stdout + stderr for stdout, stderr in results)
        started = time.monotonic()  # a later command finds it again
        again = subprocess.run([sys.executable, "-m", "flows.cli", "server", "status"], cwd=PROJECT_ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
        assert f"Prefect UI: {state['url']} (pid {state['pid']}" in again.stdout
        print(f"second look-up in {time.monotonic() - started:.1f} s")
        # A thread with no settings context of its own (Prefect's log shipping, a task's worker threads)
        # must see the local server too, or it starts a temporary one and its logs never reach the UI.
        in_thread = ("import threading; from flows import cli; cli.use_prefect_api(); "
                     "from prefect.settings import get_current_settings as current; seen = []; "
                     "t = threading.Thread(target=lambda: seen.append(current().api.url)); t.start(); t.join(); "
                     "print('thread:', seen[0])")
        thread = subprocess.run([sys.executable, "-c", in_thread], cwd=PROJECT_ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert f"thread: {state['url']}/api" in thread.stdout, thread
    finally:
        stopped = subprocess.run([sys.executable, "-m", "flows.cli", "server", "stop"], cwd=PROJECT_ROOT, env=env,
                                 capture_output=True, text=True, timeout=120)
    assert "stopped" in stopped.stdout
    assert not alive(state["pid"])
    assert not (home / cli.STATE_FILE).exists() and not (home / cli.PID_FILE).exists()


def test_an_empty_store_is_one_line_and_starts_nothing(tmp_path, capsys):
    from mlip_autopipec.store import StructureStore

    StructureStore(tmp_path / "empty.db").status_counts()
    assert export_flow.main(["--store", str(tmp_path / "empty.db"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: nothing to export: {tmp_path / 'empty.db'} has no "
                                               "completed structures in campaign 'default'")
    assert not (tmp_path / "out").exists()


def test_the_installed_entry_point_runs_from_anywhere(tmp_path):
    """`pip install -e .` (scripts/bootstrap.sh) installs `mlip-autopipec`, which finds flows/ and tasks/."""
    script = Path(sys.executable).parent / "mlip-autopipec"
    assert script.is_file(), "reinstall the project: scripts/bootstrap.sh (pip install -e .)"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([str(script), "export", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "--test-fraction" in done.stdout, done.stderr[-2000:]
    status = subprocess.run([str(script), "server", "status"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**env, "PREFECT_HOME": str(tmp_path / "home")})
    assert status.returncode == 0 and "no local Prefect server is running" in status.stdout, status.stderr[-2000:]


def test_a_stale_state_file_never_kills_another_process(tmp_path):
    """After a reboot the state file may name a pid that now belongs to something else."""
    from prefect.settings import PREFECT_HOME, temporary_settings

    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stale = json.dumps({"pid": other.pid, "port": 9, "url": "http://127.0.0.1:9"})
        with temporary_settings(updates={PREFECT_HOME: str(tmp_path)}):
            (tmp_path / cli.STATE_FILE).write_text(stale)
            assert cli.stop_local_server() is True
            (tmp_path / cli.STATE_FILE).write_text(stale)
            assert cli.local_server(start=False) is None
        assert other.poll() is None  # still running
        assert not (tmp_path / cli.STATE_FILE).exists()
    finally:
        other.kill()
        other.wait()


def test_a_server_that_is_not_ours_is_not_used(tmp_path):
    """Ours died and something else answers at its address (another user's server on a shared login
    node): commands must not send their runs there."""
    import http.server
    import threading

    from prefect.settings import PREFECT_HOME, temporary_settings

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    impostor = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        url = f"http://127.0.0.1:{impostor.server_port}"
        assert cli._healthy(url)
        with temporary_settings(updates={PREFECT_HOME: str(tmp_path)}):
            (tmp_path / cli.STATE_FILE).write_text(json.dumps({"pid": dead.pid, "port": 0, "url": url}))
            assert cli.local_server(start=False) is None
    finally:
        impostor.shutdown()
