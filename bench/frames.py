"""How long ``RpcCodec.parse`` takes on the frames that matter: the usual small answer (the hot
path of every call), a small hostile frame, and the most expensive legal frames at a size limit.

    python bench/frames.py                     # this tree's rpc.py
    python bench/frames.py --against HEAD~3    # and the rpc.py of another revision, side by side
    python bench/frames.py --only micro        # one section: micro, hostile, large
    python bench/frames.py --only large --match deep   # the large frames whose name holds "deep"

Each large frame runs in a fresh interpreter (a clean heap and garbage collector), timed once;
"then gc" is one full collection afterwards, with the answer still held: what the collector
pays, at each of its full passes, for keeping the decoded value (much more for deep values). With ``--against``, the old figure is the old client's path: ``parse_result``
and, when that short path declines, ``parse``. Results are logged, one line each.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import time
import timeit
import types
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SMALL = '{"jsonrpc":"2.0","result":{"output":"42"},"id":"17"}'
HOSTILE = "[" * 300 + '"' + '\\"' * 20000  # 40 KB: nesting prefix, then escaped quotes

logger = logging.getLogger("bench.frames")


def load_rpc(revision: str | None) -> types.ModuleType:
    """This tree's rpc module, or the rpc.py of ``revision`` loaded beside it."""
    sys.path.insert(0, str(ROOT / "src"))
    import circle_ws_web.rpc as current

    if revision is None:
        return current
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:src/circle_ws_web/rpc.py"],
        check=True, capture_output=True, text=True,
    ).stdout
    module = types.ModuleType("circle_ws_web.rpc_old")
    module.__package__ = "circle_ws_web"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:rpc.py", "exec"), module.__dict__)
    return module


def client_path(rpc: types.ModuleType, codec: Any) -> Callable[[str], Any]:
    """What a client calls per frame with this rpc module: parse, or parse_result then parse."""
    short = getattr(codec, "parse_result", None)
    if short is None:
        return codec.parse  # type: ignore[no-any-return]

    def old(frame: str) -> Any:
        answer = short(frame)
        return rpc.Response(*answer) if answer is not None else codec.parse(frame)

    return old


def large_frames(size: int) -> dict[str, str]:
    """Legal JSON-RPC responses of ``size`` characters, each expensive in its own way."""
    head, tail = '{"jsonrpc":"2.0","result":', ',"id":"1"}'
    room = size - len(head) - len(tail)

    def fill(unit: str, around: int = 1) -> str:
        """``around`` nested arrays holding ``unit, unit, ...``, padded with spaces to size."""
        first, last = "[" * around, "]" * around
        count = (room - len(first) - len(last) + 1) // (len(unit) + 1)
        return pad(first + ",".join([unit] * count) + last)

    def pad(body: str) -> str:
        return head + body + " " * (room - len(body)) + tail

    deep = "[" * 198 + "]" * 198
    return {
        "nested empty arrays [[],[],...]": fill("[]"),
        "arrays 198 deep, one after another": fill(deep),
        "200 deep: 198 arrays around [],[],...": fill("[]", around=198),
        "empty objects [{},{},...]": fill("{}"),
        "small objects [{\"a\":1},...]": fill('{"a":1}'),
        "one object, distinct keys": pad("{" + ",".join(f'"{i:07d}":0' for i in range((room - 2) // 12)) + "}"),
        "integers [0,0,...]": fill("0"),
        "floats [0.5,0.5,...]": fill("0.5"),
        "empty strings [\"\",...]": fill('""'),
        "one string of escaped quotes": fill('"' + '\\"' * (room // 2 - 4) + '"'),
        "strings holding brackets [\"[\",...]": fill('"["'),
    }


def micro(new: Any, old: Any | None, old_codec: Any | None) -> None:
    """Best of 60 interleaved runs of 20000 parses of the usual answer. "before" is the old
    client's path to a Response; "short path" the old parse_result alone (a tuple)."""
    paths = {"now": new}
    if old is not None:
        paths["before"] = old
        if hasattr(old_codec, "parse_result"):
            paths["short path"] = old_codec.parse_result  # type: ignore[union-attr]
    best = {name: float("inf") for name in paths}
    for _ in range(60):
        for name, fn in paths.items():
            best[name] = min(best[name], timeit.timeit(lambda: fn(SMALL), number=20000) / 20000)
    for name, value in best.items():
        logger.info("small answer   %-10s %6.0f ns per frame", name, value * 1e9)


def hostile(new: Any, old: Any | None) -> None:
    for name, fn in (("now", new), ("before", old)):
        if fn is None:
            continue
        start = time.perf_counter()
        out = fn(HOSTILE)
        logger.info("hostile 40 KB  %-7s %8.4f s  -> %r", name, time.perf_counter() - start, out)


def one_large(revision: str | None, name: str, size: int) -> None:
    """In a fresh interpreter: parse one large frame, then let the collector catch up."""
    rpc = load_rpc(revision)
    codec = rpc.RpcCodec(max_message_size=size)
    frame = large_frames(size)[name]
    fn = client_path(rpc, codec)
    start = time.perf_counter()
    out = fn(frame)
    parsed = time.perf_counter() - start
    start = time.perf_counter()
    gc.collect()
    collected = time.perf_counter() - start
    kind = type(out).__name__ + (f"({out.reason[:40]!r})" if type(out).__name__ == "BadFrame" else "")
    sys.stdout.write(json.dumps({"parse": parsed, "gc": collected, "kind": kind}) + "\n")


def large(revision: str | None, size: int, match: str = "") -> None:
    for name in large_frames(1024):
        if match not in name:
            continue
        for label, rev in (("now", None), ("before", revision)):
            if label == "before" and revision is None:
                continue
            args = [sys.executable, __file__, "--one", name, "--size", str(size)]
            if rev is not None:
                args += ["--against", rev]
            result = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
            logger.info(
                "%-38s %-7s %6.2f s, then gc %5.2f s  %s", name, label, result["parse"], result["gc"], result["kind"]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="a git revision whose rpc.py to measure beside this one")
    parser.add_argument("--size", type=int, default=16 * 2**20, help="large frame size (default 16 MiB)")
    parser.add_argument("--only", choices=["micro", "hostile", "large"])
    parser.add_argument("--match", default="", help="only the large frames whose name holds this")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.one:
        one_large(args.against, args.one, args.size)
        return
    new_rpc = load_rpc(None)
    new = client_path(new_rpc, new_rpc.RpcCodec())
    old = old_codec = None
    if args.against:
        old_rpc = load_rpc(args.against)
        old_codec = old_rpc.RpcCodec()
        old = client_path(old_rpc, old_codec)
    if args.only in (None, "micro"):
        micro(new, old, old_codec)
    if args.only in (None, "hostile"):
        hostile(new, old)
    if args.only in (None, "large"):
        large(args.against, args.size, args.match)


if __name__ == "__main__":
    main()
