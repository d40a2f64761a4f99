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
# Two workers (the machine's two cores: much of a test's time is spent waiting on a
# browser, a server or a child process); each test file runs whole on one worker, with
# its module's fixtures. Pass -n 0 to run in one process.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
