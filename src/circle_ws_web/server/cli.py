"""Command line: ``python -m circle_ws_web.server --port 8701 --port 8702 [options]``.

Prints exactly one ``listening on ws://HOST:PORT`` line per port on stdout (flushed; tests and
scripts wait for these lines), logs to stderr, exits 0 on SIGINT/SIGTERM and 2 (one line on
stderr, no traceback) when a port is taken or cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from .app import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_TOTAL,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SCRIPT_SIZE,
    CircleServer,
    PortInUseError,
)
from .workers import DEFAULT_MEMORY_LIMIT

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_BIND_ERROR = 2
STOP_BOUND = 1.5
"""Seconds a graceful stop may take before the workers are killed and the process just exits:
SIGTERM / Ctrl-C end the server within 2 s whatever a peer or a script is doing."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _positive(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m circle_ws_web.server",
        description="Reference circle server: JSON-RPC 2.0 over WebSocket (fetch_nonce, "
        "authenticate, play, whoami, ping).",
    )
    parser.add_argument(
        "--port",
        type=_port,
        action="append",
        metavar="PORT",
        help="port to listen on; repeat for several; 0 picks a free one (default: 8701)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument(
        "--require-auth",
        action="store_true",
        help="answer play with -32001 until the connection authenticated",
    )
    parser.add_argument(
        "--test-controls",
        action="store_true",
        help="enable the test.* methods (silence, garbage, notify, drop, big, delay, stats)",
    )
    parser.add_argument(
        "--nonce-ttl",
        type=_positive(float),
        default=300.0,
        metavar="SECONDS",
        help="nonce lifetime (default: 300)",
    )
    parser.add_argument(
        "--script-timeout",
        type=_positive(float),
        default=2.0,
        metavar="SECONDS",
        help="play time limit (default: 2)",
    )
    parser.add_argument(
        "--max-output",
        type=_positive(int),
        default=65536,
        metavar="CHARS",
        help="play output limit (default: 65536)",
    )
    parser.add_argument(
        "--max-message-size",
        type=_positive(int),
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="largest incoming frame; bigger ones close the connection with 1009 (default: 1 MiB)",
    )
    parser.add_argument(
        "--max-script-size",
        type=_positive(int),
        default=DEFAULT_MAX_SCRIPT_SIZE,
        metavar="BYTES",
        help="largest play script in UTF-8 bytes, refused with -32602 (default: 65536)",
    )
    parser.add_argument(
        "--script-memory-limit",
        type=_positive(int),
        default=DEFAULT_MEMORY_LIMIT // 2**20,
        metavar="MIB",
        help="memory a script may allocate in its worker (default: 512)",
    )
    parser.add_argument(
        "--script-workers",
        type=_positive(int),
        default=4,
        metavar="N",
        help="worker processes evaluating scripts (default: 4)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=_positive(int),
        default=DEFAULT_MAX_IN_FLIGHT,
        metavar="N",
        help=f"slow calls (play, test.delay) running per connection (default: {DEFAULT_MAX_IN_FLIGHT})",
    )
    parser.add_argument(
        "--max-in-flight-total",
        type=_positive(int),
        default=DEFAULT_MAX_IN_FLIGHT_TOTAL,
        metavar="N",
        help=f"slow calls running in all (default: {DEFAULT_MAX_IN_FLIGHT_TOTAL})",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive(int),
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"open connections; more are closed with 1013 (default: {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--journal",
        metavar="PATH",
        help='append one JSON line {"conn", "id", "script"} per play the server starts executing',
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="stderr log level (default: WARNING; INFO adds connections and auth)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt still works
            pass
    server = CircleServer(
        args.host,
        args.port or [8701],
        require_auth=args.require_auth,
        nonce_ttl=args.nonce_ttl,
        test_controls=args.test_controls,
        max_message_size=args.max_message_size,
        script_timeout=args.script_timeout,
        max_output=args.max_output,
        journal=args.journal,
        max_script_size=args.max_script_size,
        memory_limit=args.script_memory_limit * 2**20,
        script_workers=args.script_workers,
        max_in_flight=args.max_in_flight,
        max_in_flight_total=args.max_in_flight_total,
        max_connections=args.max_connections,
    )
    try:
        await server.start()
        for url in server.urls:
            print(f"listening on {url}", flush=True)
        # Logged only after the stdout lines: callers that merge stderr into stdout read the
        # "listening on" lines first.
        logging.getLogger("circle_ws_web.server").info(
            "listening on %s (auth %s, test controls %s)",
            ", ".join(server.urls),
            "required" if args.require_auth else "optional",
            "on" if args.test_controls else "off",
        )
        await stop.wait()
    finally:
        try:
            await asyncio.wait_for(server.stop(), STOP_BOUND)
        except TimeoutError:
            logging.getLogger("circle_ws_web.server").warning(
                "stop took over %g s: killing the script workers and exiting", STOP_BOUND
            )
            server.kill_workers()
        for sig in installed:
            loop.remove_signal_handler(sig)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; return the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if logging.getLevelName(args.log_level) > logging.DEBUG:
        # websockets' own INFO lines ("server listening on ...") would precede our stdout
        # lines and duplicate them; keep its warnings and errors.
        logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLevelName(args.log_level)))
    try:
        return asyncio.run(_serve(args))
    except PortInUseError as exc:
        print(f"error: port {exc.port} is already in use", file=sys.stderr)
        return EXIT_BIND_ERROR
    except OSError as exc:
        print(f"error: cannot listen on {args.host}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BIND_ERROR
    except KeyboardInterrupt:  # only where signal handlers are unavailable
        return EXIT_OK
