#!/usr/bin/env bash
# The documentation site (mkdocs.yml): ./docs.sh serves it on http://127.0.0.1:8000 and rebuilds
# as you edit; ./docs.sh build builds it into .cache/docs-site, strict (a broken link or API
# reference fails). Extra arguments go to mkdocs. Offline: nothing is fetched from a CDN.
set -euo pipefail
cd "$(dirname "$0")"
source tools/setup.sh
setup_venv
export NO_MKDOCS_2_WARNING=1
if [ "${1:-}" = "build" ]; then
  shift
  exec "$VENV/bin/python" -m mkdocs build --strict "$@"
fi
exec "$VENV/bin/python" -m mkdocs serve -a 127.0.0.1:8000 "$@"
