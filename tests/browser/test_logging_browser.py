"""In Pyodide too the library is quiet: with logging unconfigured a reconnect cycle and bad
frames write nothing to stderr (which Pyodide turns into console output, red in a notebook);
configured at INFO, the reconnect shows. Against a real server, in a fresh page (whose root
logger nobody configured)."""

from __future__ import annotations

from typing import Any, Callable

from playwright.sync_api import Page

CYCLE = """
import io, logging, sys
from circle_ws_web import CircleWsClient, ConnectionLostError

async def cycle(url):
    c = CircleWsClient(url, reconnect_initial_delay=0.05, reconnect_max_delay=0.2)
    await c.connect()
    await c.call("test.garbage", {})
    try:
        await c.call("test.drop", {})
    except ConnectionLostError:
        pass
    await c.wait_connected(10)
    reconnects = c.metrics.reconnects
    await c.disconnect()
    return reconnects

captured = io.StringIO()
real_stderr, sys.stderr = sys.stderr, captured
try:
    unconfigured_handlers = len(logging.getLogger().handlers)
    quiet = await cycle(URL)
    quiet_output = captured.getvalue()
    logging.basicConfig(level=logging.INFO, stream=captured, format="%(levelname)s %(name)s: %(message)s")
    loud = await cycle(URL)
    loud_output = captured.getvalue()[len(quiet_output):]
finally:
    sys.stderr = real_stderr
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
{"handlers": unconfigured_handlers, "quiet": quiet, "quiet_output": quiet_output,
 "loud": loud, "loud_output": loud_output}
"""


def test_reconnect_is_silent_unless_logging_is_configured(
    pyodide_page: Page, run_py: Callable[..., Any], servers: Any
) -> None:
    out = run_py(pyodide_page, CYCLE.replace("URL", repr(servers.url("open"))), timeout=60)
    assert out["handlers"] == 0  # really unconfigured: Python's last resort would print
    assert out["quiet"] == 1 and out["quiet_output"] == ""
    assert out["loud"] == 1
    lines = out["loud_output"].splitlines()
    assert any(line.startswith("INFO circle_ws_web:") and "reconnected" in line for line in lines), lines
    assert any(line.startswith("WARNING circle_ws_web:") and "bad frame" in line for line in lines), lines
