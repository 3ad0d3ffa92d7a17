"""The command line (`circle-ws`, `python -m circle_ws_web`) against real reference servers.

Why: the CLI is how people check a server by hand and how shell scripts use one, so what it
prints and the exit code it ends with are its contract: 0 ok, 1 script error, 2 usage error,
3 could not connect or authenticate; errors are one line (no traceback unless --debug); the
private key never appears. The interactive prompt is driven through a pseudo-terminal
(pexpect), as a person types: a script, a slow call cancelled with Ctrl-C (the session goes
on), a server restart shown as it happens (reconnecting, re-authenticated), Ctrl-D and exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pexpect
import pytest

from support.fleet import FleetPool
from support.servers import SRC, TEST_KEY

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_KEY_PREFIX = "044e3b81af"  # of TEST_KEY


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CIRCLE_WS_KEY"}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args: str, key: str | None = None, stdin: str | None = None, exe: list[str] | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m circle_ws_web ARGS` (or `exe ARGS`); the key, if any, through $CIRCLE_WS_KEY."""
    environ = cli_env() if env is None else env
    if key is not None:
        environ["CIRCLE_WS_KEY"] = key
    cmd = (exe or [sys.executable, "-m", "circle_ws_web"]) + list(args)
    done = subprocess.run(cmd, capture_output=True, text=True, env=environ, input=stdin, timeout=120, cwd=ROOT)
    assert TEST_KEY not in done.stdout + done.stderr  # the key is never shown, whatever happened
    if "--debug" not in args:
        assert "Traceback" not in done.stderr  # errors are one line, never a traceback
    return done


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


# --- one-shot runs and exit codes ------------------------------------------------------------


def test_a_script_prints_its_output_and_exits_0(servers: Any) -> None:
    done = run_cli(servers.url("auth"), "40 + 2", key=TEST_KEY)
    assert (done.returncode, done.stdout, done.stderr) == (0, "42\n", "")


def test_the_console_script_is_installed_and_works(servers: Any) -> None:
    script = Path(sys.executable).parent / "circle-ws"
    assert script.is_file(), f"{script} missing: pip install -e . (pyproject's [project.scripts])"
    done = run_cli(servers.url("open"), "40 + 2", exe=[str(script)])
    assert (done.returncode, done.stdout) == (0, "42\n")
    usage = run_cli("--help", exe=[str(script)])
    assert usage.returncode == 0 and "--key-file" in usage.stdout and "2 usage error" in " ".join(usage.stdout.split())


def test_a_failing_script_exits_1_with_one_readable_line(servers: Any) -> None:
    done = run_cli(servers.url("open"), "1 / 0")
    assert done.returncode == 1 and done.stdout == ""
    assert one_line(done.stderr) == "circle-ws: script error: ZeroDivisionError: division by zero"


def test_a_call_that_times_out_exits_1(servers: Any) -> None:
    # The reference server's `play` has no slow expression; an impossible timeout is as good.
    done = run_cli(servers.url("open"), "2 ** 10", "--timeout", "0.000001")
    assert done.returncode == 1, done
    assert "circle-ws:" in one_line(done.stderr) and "within" in done.stderr


@pytest.mark.parametrize(
    "args, says",
    [
        ([], "no server"),
        (["40 + 2"], "must be a ws:// or wss:// URL"),
        (["{open}", "1", "2"], "expected one script"),
        (["--server", "{open}", "--server", "{auth}", "1"], "choose --all"),
        (["--all", "--any", "--server", "{open}", "1"], "not allowed with"),
        (["ws://127.0.0.1:notaport", "1"], "malformed"),
        (["--server", "http://127.0.0.1:8701", "1"], "expected 'ws' or 'wss'"),
        (["--key", "abc", "{open}", "1"], "wrong length"),
        (["--key-file", "/nonexistent/key", "{open}", "1"], "cannot read the key file"),
        (["--key", TEST_KEY, "--key-file", "/dev/null", "{open}", "1"], "not both"),
        (["--timeout", "0", "{open}", "1"], "must be > 0"),
        (["--idempotent", "--server", "{open}", "--server", "{auth}", "--all", "1"], "--idempotent needs --any"),
        (["--frobnicate", "{open}", "1"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_one_line(servers: Any, args: list[str], says: str) -> None:
    args = [a.format(open=servers.url("open"), auth=servers.url("auth")) for a in args]
    done = run_cli(*args)
    assert done.returncode == 2, done
    warning = [line for line in done.stderr.splitlines() if "warning:" in line]  # --key warns first
    error = one_line("\n".join(line for line in done.stderr.splitlines() if line not in warning))
    assert error.startswith("circle-ws: error: ") and says in error, error


def test_a_server_that_is_down_exits_3(servers: Any) -> None:
    done = run_cli(servers.dead_url(), "40 + 2")
    assert done.returncode == 3 and done.stdout == ""
    assert one_line(done.stderr).startswith(f"circle-ws: could not connect to {servers.dead_url()}")


def test_a_server_that_never_answers_the_handshake_exits_3(servers: Any) -> None:
    done = run_cli(servers.stalled_url(), "40 + 2", "--connect-timeout", "0.5")
    assert done.returncode == 3
    assert servers.stalled_url() in one_line(done.stderr)


def test_no_key_on_a_server_that_requires_authentication_exits_3_and_says_how(servers: Any) -> None:
    done = run_cli(servers.url("auth"), "40 + 2")
    assert done.returncode == 3
    line = one_line(done.stderr)
    assert "requires authentication" in line and "--key-file" in line and "CIRCLE_WS_KEY" in line


# --- several servers ---------------------------------------------------------------------------


def test_all_prints_one_line_per_server_in_the_order_given(servers: Any) -> None:
    auth, open_ = servers.url("auth"), servers.url("open")
    done = run_cli("--server", open_, "--server", auth, "--all", "6 * 7", key=TEST_KEY)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"{open_}: 42", f"{auth}: 42"]


def test_all_with_a_server_down_reports_it_and_exits_3(servers: Any) -> None:
    open_, dead = servers.url("open"), servers.dead_url()
    done = run_cli("--server", open_, "--server", dead, "--all", "6 * 7")
    assert done.returncode == 3
    assert done.stdout.splitlines() == [f"{open_}: 42"]
    assert one_line(done.stderr).startswith(f"circle-ws: {dead}: could not connect")


def test_any_uses_the_first_connected_server_that_answers(servers: Any) -> None:
    open_, auth, dead = servers.url("open"), servers.url("auth"), servers.dead_url()
    done = run_cli("--server", dead, "--server", open_, "--server", auth, "--any", "6 * 7", key=TEST_KEY)
    assert (done.returncode, done.stdout) == (0, f"{open_}: 42\n")
    nobody = run_cli("--server", dead, "--server", servers.stalled_url(), "--any", "1", "--connect-timeout", "0.5")
    assert nobody.returncode == 3 and nobody.stdout == ""
    assert "could not connect" in nobody.stderr


def test_any_prefers_the_servers_in_the_order_given(servers: Any) -> None:
    open_, auth = servers.url("open"), servers.url("auth")
    for first, second in ((open_, auth), (auth, open_)):
        done = run_cli("--server", first, "--server", second, "--any", "6 * 7", key=TEST_KEY)
        assert (done.returncode, done.stdout) == (0, f"{first}: 42\n")
    failed = run_cli("--server", open_, "--server", auth, "--any", "1 / 0", key=TEST_KEY)
    assert failed.returncode == 1 and failed.stdout == ""  # a script error is an answer: not retried
    assert one_line(failed.stderr) == "circle-ws: script error: ZeroDivisionError: division by zero"
    as_json = run_cli("--server", open_, "--server", auth, "--any", "--json", "1 / 0", key=TEST_KEY)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"]["code"] == -32010


def test_json_prints_the_whole_result(servers: Any) -> None:
    open_, dead = servers.url("open"), servers.dead_url()
    ok = run_cli(open_, "'a' * 3", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout) == {open_: {"output": "aaa"}}
    failed = run_cli(open_, "1 / 0", "--json")
    assert failed.returncode == 1
    error = json.loads(failed.stdout)[open_]["error"]
    assert error["type"] == "JsonRpcError" and error["code"] == -32010 and "ZeroDivisionError" in error["message"]
    mixed = run_cli("--server", open_, "--server", dead, "--all", "--json", "1 + 1")
    assert mixed.returncode == 3
    doc = json.loads(mixed.stdout)
    assert list(doc) == [open_, dead]
    assert doc[open_] == {"output": "2"} and doc[dead]["error"]["type"] == "ConnectError"


def test_all_with_one_failing_script_exits_1(servers: Any) -> None:
    open_, auth = servers.url("open"), servers.url("auth")
    # Without a key the auth server refuses (3); with one, both run the script and it fails (1).
    done = run_cli("--server", open_, "--server", auth, "--all", "undefined_name", key=TEST_KEY)
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 2


def test_the_script_can_come_from_stdin(servers: Any) -> None:
    done = run_cli(servers.url("open"), "-", stdin="40 + 2\n")
    assert (done.returncode, done.stdout) == (0, "42\n")


# --- the key -----------------------------------------------------------------------------------


def test_the_key_from_a_file(servers: Any, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"0x{TEST_KEY}\n")
    key_file.chmod(0o600)
    done = run_cli("--key-file", str(key_file), servers.url("auth"), "40 + 2")
    assert (done.returncode, done.stdout, done.stderr) == (0, "42\n", "")
    key_file.chmod(0o644)
    loose = run_cli("--key-file", str(key_file), servers.url("auth"), "40 + 2")
    assert loose.returncode == 0 and "readable by other users" in one_line(loose.stderr)


def test_the_key_on_the_command_line_works_but_warns(servers: Any) -> None:
    done = run_cli("--key", TEST_KEY, servers.url("auth"), "40 + 2")
    assert (done.returncode, done.stdout) == (0, "42\n")
    warning = one_line(done.stderr)
    assert warning.startswith("circle-ws: warning: --key") and "ps" in warning and "--key-file" in warning


def test_the_key_from_the_environment(servers: Any) -> None:
    done = run_cli(servers.url("auth"), "40 + 2", key=TEST_KEY)
    assert (done.returncode, done.stdout, done.stderr) == (0, "42\n", "")


def test_debug_shows_the_traceback_and_the_library_log_but_not_the_key(servers: Any) -> None:
    done = run_cli("--debug", servers.url("auth"), "1 / 0", key=TEST_KEY)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "JsonRpcError" in done.stderr
    assert "DEBUG" in done.stderr or "INFO" in done.stderr
    assert "circle-ws: script error: ZeroDivisionError" in done.stderr


# --- the interactive prompt, through a pseudo-terminal ---------------------------------------


PROMPT = "circle> "


def spawn(*args: str, key: str | None = TEST_KEY) -> pexpect.spawn:
    env = cli_env(TERM="dumb")
    if key is not None:
        env["CIRCLE_WS_KEY"] = key
    child = pexpect.spawn(
        sys.executable, ["-m", "circle_ws_web", *args], env=env, encoding="utf-8", timeout=60, cwd=str(ROOT),
        dimensions=(40, 200),
    )
    child.expect_exact(PROMPT)
    return child


def test_prompt_runs_scripts_and_calls_and_ends_with_exit(servers: Any) -> None:
    auth = servers.url("auth")
    child = spawn(auth)
    assert f"{auth}: authenticated as {PUBLIC_KEY_PREFIX}" in child.before
    child.sendline("40 + 2")
    child.expect_exact("42")
    child.expect_exact(PROMPT)
    child.sendline("1 / 0")  # an error is one line and the session goes on
    child.expect_exact("circle-ws: script error: ZeroDivisionError: division by zero")
    child.expect_exact(PROMPT)
    child.sendline(":call whoami")
    child.expect(r'\{"authenticated": true, "pubkey": "04')
    child.expect_exact(PROMPT)
    child.sendline(":call whoami {not json")
    child.expect_exact("params are not JSON")
    child.expect_exact(PROMPT)
    child.sendline(":status")
    child.expect(rf"{auth}\s+connected\s+")
    child.expect_exact(PROMPT)
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert TEST_KEY not in (child.before or "")


def test_ctrl_c_cancels_the_running_call_not_the_session(servers: Any) -> None:
    child = spawn(servers.url("auth"))
    child.sendline(':call test.delay {"seconds": 60, "result": "late"}')
    child.expect_exact("still running (Ctrl-C cancels it)")  # the call is in flight now
    child.sendintr()
    child.expect_exact("cancelled")
    child.expect_exact(PROMPT)
    child.sendline("40 + 2")  # the session, its connection and its key are all still there
    child.expect_exact("42")
    assert "late" not in child.before
    child.expect_exact(PROMPT)
    child.sendline(":status")
    child.expect(r"connected\s+\S+ ms / \S+ ms")
    child.expect_exact(PROMPT)
    child.sendintr()  # Ctrl-C at the prompt does not end the session either
    child.expect_exact("(Ctrl-D or exit to leave)")
    child.sendline("6 * 7")
    child.expect_exact("42")
    child.expect_exact(PROMPT)
    child.sendeof()  # Ctrl-D ends it cleanly
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_prompt_shows_a_reconnection_as_it_happens(servers: Any) -> None:
    auth = servers.url("auth")
    child = spawn(auth)
    servers.servers["auth"].restart()  # a real kill: the socket drops without a close frame
    child.expect_exact(f"* {auth}: reconnecting")
    child.expect_exact(f"* {auth}: connected again (re-authenticated with a fresh nonce)")
    child.sendline("40 + 2")  # the auth server runs play only after authentication: 42 proves it
    child.expect_exact("42")
    child.expect_exact(PROMPT)
    child.sendline(":status")
    child.expect(rf"{auth}\s+connected\s+.*\s1\s*\r?\n")  # reconnects: 1
    child.expect_exact(PROMPT)
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_prompt_with_all_servers(servers: Any) -> None:
    open_, auth = servers.url("open"), servers.url("auth")
    child = spawn("--server", open_, "--server", auth, "--all")
    child.sendline("40 + 2")
    child.expect_exact(f"{open_}: 42")
    child.expect_exact(f"{auth}: 42")
    child.expect_exact(PROMPT)
    child.sendline(":call ping")
    child.expect_exact(f'{open_}: "pong"')
    child.expect_exact(f'{auth}: "pong"')
    child.expect_exact(PROMPT)
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_without_a_terminal_the_prompt_reads_lines_from_stdin(servers: Any) -> None:
    done = run_cli(servers.url("open"), stdin="40 + 2\n\n1 / 0\n:call ping\n'done'\n")
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["42", '"pong"', "done"]
    assert one_line(done.stderr) == "circle-ws: script error: ZeroDivisionError: division by zero"


def test_prompt_exits_3_when_no_server_can_be_reached(servers: Any) -> None:
    done = run_cli(servers.dead_url(), stdin="40 + 2\n")
    assert done.returncode == 3 and done.stdout == ""
    assert "could not connect" in one_line(done.stderr)


# --- --any: failover only when nothing was sent (servers with a journal of every play) --------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetPool]:
    pool = FleetPool(tmp_path_factory.mktemp("cli-fleet"))
    pool.start()
    yield pool
    pool.close()


@pytest.mark.parametrize("idempotent", [False, True])
def test_any_never_sends_a_sent_script_again_unless_idempotent(fleet: FleetPool, idempotent: bool) -> None:
    fleet.ensure_running()
    a, b = fleet.url("a"), fleet.url("b")
    child = spawn("--server", a, "--server", b, "--any", *(["--idempotent"] if idempotent else []))
    try:
        child.sendline("40 + 2")
        child.expect_exact(f"{a}: 42")  # the first given is preferred
        child.expect_exact(PROMPT)
        child.sendline(':call test.silence {"seconds": 30}')  # a takes requests, never answers
        child.expect_exact(f'{a}: {{"ok": true}}')
        child.expect_exact(PROMPT)
        script = f"{70000 + idempotent} + 1"
        child.sendline(script)
        child.expect_exact("still running (Ctrl-C cancels it)")  # sent to a, which is silent
        fleet.servers["a"].stop()
        if idempotent:
            child.expect_exact(f"{b}: {70001 + idempotent}")
        else:
            child.expect(r"circle-ws: connection to \S+ lost while 'play' was in flight .*; not re-sent")
        child.expect_exact(PROMPT)
        ran_on_b = [e for e in fleet.journal("b") if e["script"] == script]
        assert len(ran_on_b) == (1 if idempotent else 0)  # never run twice, never behind our back
        assert not [e for e in fleet.journal("a") if e["script"] == script]  # a was silent
        child.sendline("6 * 7")  # a is down now: nothing can be sent there, so b takes it
        child.expect_exact(f"{b}: 42")
        child.expect_exact(PROMPT)
        child.sendline(":call ping")
        child.expect_exact(f'{b}: "pong"')
        child.expect_exact(PROMPT)
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        fleet.ensure_running()
    assert child.exitstatus == 0
