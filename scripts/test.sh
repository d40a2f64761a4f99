#!/usr/bin/env bash
# The whole test suite, slow and browser tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Browser tests drive Debian's Chromium (browsers cannot be downloaded by Playwright here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2
  else
    echo "chromium is missing: install Debian's 'chromium' package (browser tests will fail)" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
