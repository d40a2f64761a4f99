#!/usr/bin/env bash
# Install the locked environment into .venv using only the machine's python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never
if [ ! -x .tools/bin/uv ]; then
  python3 -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
fi
.tools/bin/uv sync --frozen --python "$(command -v python3)" "$@"
