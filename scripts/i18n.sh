#!/usr/bin/env bash
# Extract every marked message into the template and merge it into each catalogue
# (detector/locales/<lang>/LC_MESSAGES/messages.po); then write the new entries' Spanish.
# tests/test_i18n.py fails on a marked message the Spanish catalogue does not translate.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBABEL=".venv/bin/pybabel"
KEYWORDS=(-k _ -k N_ -k "ngettext:1,2" -k "translate:2" -k "translate_plural:2,3")
"$PYBABEL" -q extract -F babel.cfg "${KEYWORDS[@]}" --no-location --sort-output \
  --project=prison-access-detector -o detector/locales/messages.pot .
"$PYBABEL" -q update -i detector/locales/messages.pot -d detector/locales --no-fuzzy-matching \
  --ignore-obsolete --width=90
echo "catalogues updated: $(ls detector/locales/*/LC_MESSAGES/messages.po | tr '\n' ' ')"
