"""``python -m circle_ws_web``: the command-line client (see :mod:`circle_ws_web.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
