"""The command line: ``circle-ws URL "40 + 2"`` (also ``python -m circle_ws_web``).

Why: checking a server, or running one expression on every server of a fleet, should not need
a Python file. Built on :mod:`circle_ws_web.sync`, so it gets the library's guarantees (typed
errors, bounded calls, reconnection with re-authentication while the prompt waits).

Exit codes: 0 ok, 1 script error (the script failed, timed out or lost its connection),
2 usage error (bad arguments, URL, key or key file), 3 could not connect or authenticate,
130 interrupted (Ctrl-C during a one-shot run). Errors are one line on stderr; ``--debug``
adds the traceback and the library's DEBUG log. The private key is never printed.

This is the one module of the package that prints: printing is its job.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import stat
import sys
import threading
import traceback
from typing import IO, Any, Callable, NoReturn, Sequence

from . import __version__
from .errors import (
    AuthError,
    CircleWsClientError,
    ClientClosedError,
    ConfigError,
    ConnectError,
    JsonRpcError,
    NotConnectedError,
)
from .results import PlayResult
from .status import ConnectionStatus
from .sync import GRACE, WsManager, ws_manager

__all__ = ["EXIT_CONNECT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SCRIPT", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_SCRIPT = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_INTERRUPTED = 130

PROG = "circle-ws"
KEY_ENV = "CIRCLE_WS_KEY"
PROMPT = "circle> "
#: Seconds before the prompt says a call is still running (and that Ctrl-C cancels it).
HINT_AFTER = 1.0
AUTH_REQUIRED = -32001
AUTH_FAILED = -32002
SCRIPT_ERROR = -32010

HELP = """\
Type a script and press Enter to run it; its output is printed.
  :call METHOD [JSON]   call any JSON-RPC method, params as a JSON object
                        (e.g. :call whoami, :call test.delay {"seconds": 5})
  :status               status, round trip and counters of every server
  :help                 this text
  exit, Ctrl-D          leave (the connections are closed)
Ctrl-C cancels the running script or call, not the session.
Status changes (reconnecting, re-authenticated) are printed as they happen."""


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage block: the usage is one ``--help`` away."""
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see {PROG} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Run scripts on circle servers (JSON-RPC 2.0 over WebSocket) and print their "
        "output. With no script: an interactive prompt.",
        epilog=f"The private key comes from --key-file or ${KEY_ENV} (64 hex digits). Exit codes: "
        "0 ok, 1 script error, 2 usage error, 3 could not connect or authenticate.",
    )
    parser.add_argument(
        "words", nargs="*", metavar="[URL] [SCRIPT]",
        help="the server URL (unless --server is given), then the script ('-' reads it from "
        "stdin); no script: an interactive prompt",
    )
    parser.add_argument(
        "--server", action="append", default=[], metavar="URL",
        help="a server URL; repeat for several (then choose --all or --any)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--all", action="store_true", help="run on every server; prints 'URL: output' per server")
    mode.add_argument(
        "--any", action="store_true",
        help="run on one server, the first given that can take the call (the next ones are "
        "fallbacks); it moves on only when nothing was sent",
    )
    parser.add_argument(
        "--idempotent", action="store_true",
        help="with --any: the script may run twice, so one whose connection was lost after it "
        "was sent is tried again on the next server",
    )
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON: {url: {output | error}}")
    parser.add_argument("--key-file", metavar="PATH", help="read the private key from this file")
    parser.add_argument(
        "--key", metavar="HEX",
        help="the private key itself (discouraged: a command line is visible to other users in ps)",
    )
    parser.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS", help="per call (default 30)")
    parser.add_argument(
        "--connect-timeout", type=_seconds, default=None, metavar="SECONDS",
        help="per connection attempt, authentication included (default 10)",
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks and the library's DEBUG log on stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _looks_like_url(word: str) -> bool:
    return word.strip().lower().startswith(("ws://", "wss://"))


def _servers_and_script(args: argparse.Namespace) -> tuple[list[str], str | None]:
    words = list(args.words)
    servers = list(args.server)
    if not servers:
        if not words:
            raise UsageError("no server: give a URL (circle-ws ws://HOST:PORT \"40 + 2\") or --server URL")
        if not _looks_like_url(words[0]):
            raise UsageError(f"the first argument must be a ws:// or wss:// URL (or use --server), got {words[0]!r}")
        servers.append(words.pop(0))
    if len(words) > 1:
        raise UsageError(f"expected one script, got {len(words)} arguments (quote the script: \"40 + 2\")")
    if len(servers) > 1 and not (args.all or args.any):
        raise UsageError(f"{len(servers)} servers given: choose --all (every server) or --any (the first that can take it)")
    if args.idempotent and not args.any:
        raise UsageError("--idempotent needs --any (it allows a retry on the next server)")
    script = words[0] if words else None
    if script == "-":
        script = sys.stdin.read()
    return servers, script


def _read_key(args: argparse.Namespace, err: IO[str]) -> str | None:
    """The key's text from --key-file, --key or $CIRCLE_WS_KEY (in that order); None without."""
    if args.key_file is not None and args.key is not None:
        raise UsageError("give the key once: --key-file or --key, not both")
    if args.key_file is not None:
        try:
            with open(args.key_file, encoding="utf-8") as f:
                text = f.read()
            mode = os.stat(args.key_file).st_mode
        except OSError as exc:
            raise UsageError(f"cannot read the key file {args.key_file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"the key file {args.key_file} is not text (expected 64 hex digits)") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(f"{PROG}: warning: the key file {args.key_file} is readable by other users (chmod 600 it)", file=err)
        return text.strip()
    if args.key is not None:
        print(
            f"{PROG}: warning: --key puts the private key on the command line, where other users can "
            f"see it (ps, /proc); prefer --key-file PATH or ${KEY_ENV}",
            file=err,
        )
        return args.key
    env = os.environ.get(KEY_ENV)
    return env.strip() if env and env.strip() else None


# --- outcomes ------------------------------------------------------------------------------


def exit_code_for(exc: BaseException) -> int:
    """1 for a script that failed, 3 for a server that could not be reached or refused us."""
    if isinstance(exc, (ConnectError, AuthError, NotConnectedError, ClientClosedError)):
        return EXIT_CONNECT
    if isinstance(exc, JsonRpcError) and exc.code in (AUTH_REQUIRED, AUTH_FAILED):
        return EXIT_CONNECT
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    return EXIT_SCRIPT


def describe(exc: BaseException) -> str:
    """One readable line for an error (never a key: the library's messages never hold one)."""
    if isinstance(exc, JsonRpcError):
        if exc.code == SCRIPT_ERROR:
            return f"script error: {exc.message}"
        if exc.code == AUTH_REQUIRED:
            return f"the server requires authentication: give a key with --key-file or ${KEY_ENV} ({exc.message})"
        return f"{exc.message} (JSON-RPC error {exc.code})"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _error_json(exc: BaseException) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": type(exc).__name__, "message": describe(exc)}
    if isinstance(exc, JsonRpcError):
        doc["code"] = exc.code
        if exc.data is not None:
            doc["data"] = exc.data
    return doc


def _outcome_json(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, BaseException):
        return {"error": _error_json(outcome)}
    if isinstance(outcome, PlayResult):
        return {"output": outcome.output}
    return {"result": outcome}


def _text(outcome: Any) -> str:
    if isinstance(outcome, PlayResult):
        return outcome.output
    return json.dumps(outcome, ensure_ascii=False)


# --- running -------------------------------------------------------------------------------


class _Cli:
    """One invocation: a connected sync manager, the servers to use and how to print."""

    def __init__(
        self, manager: WsManager, mode: str, as_json: bool, timeout: float | None, out: IO[str], err: IO[str], debug: bool,
        idempotent: bool = False,
    ) -> None:
        self.manager = manager
        self.mode = mode  # "one", "all" or "any"
        self.idempotent = idempotent
        self.as_json = as_json
        self.timeout = timeout
        self.out = out
        self.err = err
        self.debug = debug
        self.connect_errors: dict[str, CircleWsClientError | None] = {}
        self.lock = threading.Lock()
        self.on_slow: Callable[[], None] | None = None
        self.one_shot = True

    def say(self, text: str, *, error: bool = False) -> None:
        stream = self.err if error else self.out
        with self.lock:
            print(text, file=stream, flush=True)

    def fail_line(self, url: str | None, exc: BaseException) -> None:
        where = f"{url}: " if url else ""
        self.say(f"{PROG}: {where}{describe(exc)}", error=True)
        if self.debug:
            self.say("".join(traceback.format_exception(exc)).rstrip(), error=True)

    def connect(self) -> int:
        """Connect every server at once; 0 if at least one came up (3 otherwise)."""
        self.connect_errors = self.manager._connect_report()
        if all(error is not None for error in self.connect_errors.values()):
            for url, exc in self.connect_errors.items():
                assert exc is not None
                self.fail_line(url if len(self.connect_errors) > 1 else None, exc)
            return EXIT_CONNECT
        return EXIT_OK

    def _unreachable(self, url: str, exc: BaseException) -> BaseException:
        """In a one-shot run, a call refused because the server never came up reports why."""
        first = self.connect_errors.get(url)
        if self.one_shot and isinstance(exc, NotConnectedError) and first is not None:
            return first
        return exc

    def start(self, url: str, script: str | None, call: tuple[str, Any] | None) -> concurrent.futures.Future[Any]:
        if call is not None:
            return self.manager._submit_call(url, call[0], call[1], timeout=self.timeout)
        assert script is not None
        return self.manager._submit_script(url, script, timeout=self.timeout)

    def wait(self, futures: list[concurrent.futures.Future[Any]]) -> None:
        """Wait for every future; after HINT_AFTER, say that Ctrl-C cancels. Ctrl-C cancels all."""
        try:
            _, pending = concurrent.futures.wait(futures, HINT_AFTER)
            if pending and self.on_slow is not None:
                self.on_slow()
            bound = (self.timeout or max(c.options.request_timeout for c in map(self.manager.get_client, self.manager.urls))) + GRACE
            concurrent.futures.wait(futures, bound)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    @staticmethod
    def outcome(future: concurrent.futures.Future[Any]) -> Any:
        if not future.done():
            future.cancel()
            from .errors import RequestTimeoutError

            return RequestTimeoutError("the background event loop did not answer in time")
        exc = future.exception()
        return exc if exc is not None else future.result()

    def run(self, script: str | None, call: tuple[str, Any] | None = None) -> int:
        """Run one script (or call) as the mode says, print the outcome, return the exit code."""
        urls = self.manager.urls
        if self.mode == "any":
            return self._run_any(script, call)
        targets = urls if self.mode == "all" else urls[:1]
        futures: list[concurrent.futures.Future[Any]] = []
        outcomes: dict[str, Any] = {}
        for url in targets:
            try:
                futures.append(self.start(url, script, call))
            except CircleWsClientError as exc:
                outcomes[url] = exc
        self.wait(futures)
        it = iter(futures)
        for url in targets:
            if url not in outcomes:
                outcomes[url] = self.outcome(next(it))
        for url, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                outcomes[url] = self._unreachable(url, outcome)
        return self.report(outcomes)

    def _run_any(self, script: str | None, call: tuple[str, Any] | None) -> int:
        """The manager's ``execute_script_any``: the servers have the priorities of the order
        given, and a script moves on to the next one only when it surely was not sent (or was
        lost, with --idempotent); a script error is an answer. Its result names the server."""
        if call is not None:
            return self._call_any(call)
        assert script is not None
        future = self.manager._submit_any(script, timeout=self.timeout, idempotent=self.idempotent)
        self.wait([future])
        outcome = self.outcome(future)
        if isinstance(outcome, PlayResult):
            assert outcome.url is not None  # execute_script_any names the server that ran it
            return self.report({outcome.url: outcome})
        # Where it failed is unknown (nowhere, if nothing was sent): no URL to name.
        if self.as_json:
            self.say(json.dumps({"error": _error_json(outcome)}, ensure_ascii=False))
        else:
            self.fail_line(None, outcome)
        return exit_code_for(outcome)

    def _call_any(self, call: tuple[str, Any]) -> int:
        """``:call`` with --any: the servers in the order given; the next one only when this
        one refused before sending (not ready, breaker open): a method may not be idempotent."""
        refused: dict[str, Any] = {}
        for url in self.manager.urls:
            future = self.start(url, None, call)
            self.wait([future])
            outcome = self.outcome(future)
            if isinstance(outcome, NotConnectedError):  # CircuitOpenError too: nothing was sent
                refused[url] = self._unreachable(url, outcome)
                continue
            return self.report({url: outcome})
        code = self.report(refused)
        if not self.as_json:
            self.say(f"{PROG}: no server could take the call (nothing was sent)", error=True)
        return code

    def report(self, outcomes: dict[str, Any]) -> int:
        code = EXIT_OK
        for outcome in outcomes.values():
            if isinstance(outcome, BaseException):
                code = max(code, exit_code_for(outcome))
        if self.as_json:
            self.say(json.dumps({url: _outcome_json(o) for url, o in outcomes.items()}, ensure_ascii=False))
            return code
        prefixed = self.mode != "one"
        for url, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                self.fail_line(url if prefixed or len(self.manager.urls) > 1 else None, outcome)
            else:
                self.say(f"{url}: {_text(outcome)}" if prefixed else _text(outcome))
        return code


class _StatusPrinter:
    """Prints each client's status changes while the prompt waits, above the line being typed."""

    def __init__(self, cli: _Cli, prompt: str, readline: Any) -> None:
        self.cli = cli
        self.prompt = prompt
        self.readline = readline
        self.at_prompt = False
        self.last: dict[str, ConnectionStatus] = {}
        self.lost: set[str] = set()
        self.authenticates = {url: cli.manager.get_client(url).public_key is not None for url in cli.manager.urls}

    def __call__(self, url: str, status: ConnectionStatus) -> None:
        if status in (ConnectionStatus.CONNECTING, ConnectionStatus.AUTHENTICATING) or self.last.get(url) is status:
            return  # each attempt's steps, and repeats while a server stays down, are noise
        self.last[url] = status
        if status is ConnectionStatus.RECONNECTING:
            self.lost.add(url)
            text = f"* {url}: reconnecting"
        elif status is ConnectionStatus.CONNECTED:
            again = url in self.lost
            self.lost.discard(url)
            how = "re-authenticated with a fresh nonce" if self.authenticates[url] else "no authentication"
            text = f"* {url}: connected again ({how})" if again else f"* {url}: connected ({how})"
        elif status is ConnectionStatus.DISCONNECTED:
            text = f"* {url}: disconnected (gave up reconnecting)"
        else:
            text = f"* {url}: {status.value}"
        self.show(text)

    def show(self, text: str) -> None:
        cli = self.cli
        with cli.lock:
            if self.at_prompt and self.readline is not None:
                line = self.readline.get_line_buffer()
                cli.out.write(f"\r\x1b[K{text}\n{self.prompt}{line}")
            else:
                cli.out.write(text + "\n")
            cli.out.flush()


def _parse_call(line: str) -> tuple[str, Any]:
    rest = line[len(":call"):].strip()
    if not rest:
        raise UsageError("usage: :call METHOD [JSON params], e.g. :call whoami")
    method, _, params_text = rest.partition(" ")
    params: Any = {}
    if params_text.strip():
        try:
            params = json.loads(params_text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"params are not JSON: {exc}") from None
    return method, params


def _status_text(manager: WsManager) -> str:
    rows = [("server", "status", "round trip avg/last", "calls", "errors", "reconnects")]
    metrics = manager.metrics()
    for url, status in manager.connection_statuses().items():
        m = metrics[url]
        ms = lambda v: "-" if v is None else f"{v * 1000:.2f} ms"  # noqa: E731
        rows.append((url, status.value, f"{ms(m.avg_rtt)} / {ms(m.last_rtt)}", str(m.calls), str(m.errors), str(m.reconnects)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def interactive(cli: _Cli, stdin: IO[str]) -> int:
    """The prompt: one script (or command) per line until Ctrl-D or ``exit``."""
    tty = stdin.isatty() and cli.out.isatty()
    readline = None
    if tty:
        try:
            import readline as _readline  # line editing and history for input()

            readline = _readline
        except ImportError:  # pragma: no cover - platforms without readline
            pass
    prompt = PROMPT if tty else ""
    printer = _StatusPrinter(cli, prompt, readline)
    for url, status in cli.manager.connection_statuses().items():
        printer.last[url] = status
    unsubscribe = cli.manager.on_status_change(printer)

    def slow() -> None:
        cli.say("… still running (Ctrl-C cancels it)")

    cli.on_slow = slow
    cli.one_shot = False
    if tty:
        for url, status in cli.manager.connection_statuses().items():
            key = cli.manager.get_client(url).public_key
            who = f"authenticated as {key[:10]}…" if key and status is ConnectionStatus.CONNECTED else status.value
            if status is not ConnectionStatus.CONNECTED:
                first = cli.connect_errors.get(url)
                who += f" ({describe(first)}; retrying in the background)" if first else ""
            cli.say(f"{url}: {who}")
        cli.say(f"circle-ws {__version__}: type a script, :help for commands, Ctrl-D or exit to leave.")
    try:
        while True:
            printer.at_prompt = True
            try:
                line = input(prompt) if stdin is sys.stdin else _read_line(stdin)
            except EOFError:
                if tty:
                    cli.say("")
                return EXIT_OK
            except KeyboardInterrupt:
                cli.say("\n(Ctrl-D or exit to leave)")
                continue
            finally:
                printer.at_prompt = False
            text = line.strip()
            if not text:
                continue
            if text in ("exit", "quit", ":exit", ":quit", "exit()", "quit()"):
                return EXIT_OK
            try:
                if text == ":help":
                    cli.say(HELP)
                elif text == ":status":
                    cli.say(_status_text(cli.manager))
                elif text.startswith(":call"):
                    cli.run(None, _parse_call(text))
                elif text.startswith(":"):
                    cli.say(f"unknown command {text.split()[0]!r}: :help lists them", error=True)
                else:
                    cli.run(line)
            except KeyboardInterrupt:
                cli.say("cancelled")
            except UsageError as exc:
                cli.say(str(exc), error=True)
    finally:
        unsubscribe()


def _read_line(stream: IO[str]) -> str:
    line = stream.readline()
    if not line:
        raise EOFError
    return line


def main(argv: Sequence[str] | None = None, *, stdin: IO[str] | None = None, out: IO[str] | None = None,
         err: IO[str] | None = None) -> int:
    """Run the command line; returns the exit code (``sys.exit(main())``)."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=err, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        servers, script = _servers_and_script(args)
        key = _read_key(args, err)
        builder = ws_manager()
        if key is not None:
            builder.private_key(key)
        for priority, url in enumerate(servers):
            # --any: the order given is the order of preference (each later one a fallback).
            builder.add_server_url(url, priority=priority if args.any else 0)
        if args.timeout is not None:
            builder.request_timeout(args.timeout)
        if args.connect_timeout is not None:
            builder.connect_timeout(args.connect_timeout)
    except (UsageError, ConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=err)
        if args.debug:
            traceback.print_exc(file=err)
        return EXIT_USAGE
    mode = "all" if args.all else "any" if args.any else "one"
    try:
        manager = builder.build()
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_USAGE
    cli = _Cli(manager, mode, args.json, args.timeout, out, err, args.debug, args.idempotent)
    try:
        code = cli.connect()
        if code != EXIT_OK:
            return code
        if script is None:
            return interactive(cli, stdin)
        return cli.run(script)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, unless --debug
        print(f"{PROG}: internal error: {type(exc).__name__}: {describe(exc)}", file=err)
        if args.debug:
            traceback.print_exc(file=err)
        return EXIT_SCRIPT
    finally:
        manager.close()
