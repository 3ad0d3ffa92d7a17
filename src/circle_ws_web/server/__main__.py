"""``python -m circle_ws_web.server``: see :func:`circle_ws_web.server.cli.main`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
