"""Settings live in one place: every `DETECTOR_*` variable is a field of
``detector.settings.Settings``, read nowhere else, and the README's table lists them all."""

from __future__ import annotations

import re

from detector.settings import Settings, settings, table
from tests.conftest import REPO

# Read by name where a setting names them (a secret is never a setting's value).
BY_NAME = re.compile(r"DETECTOR_SMTP_")


def test_the_environment_is_read_in_the_settings_module_only():
    readers = []
    for path in [*REPO.glob("detector/*.py"), *REPO.glob("dashboard/**/*.py")]:
        if path.name == "settings.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"os\.environ\.get|os\.getenv|environ\[[\"']DETECTOR", line):
                readers.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert readers == []


def test_every_detector_variable_the_code_names_is_a_setting():
    known = {v for variable, _, _ in table() for v in variable.split(" or ")}
    named = set()
    for path in [*REPO.glob("detector/*.py"), *REPO.glob("dashboard/**/*.py")]:
        named |= set(re.findall(r"\bDETECTOR_[A-Z_]+[A-Z]\b", path.read_text(encoding="utf-8")))
    assert sorted(v for v in named - known if not BY_NAME.match(v)) == []


def test_the_readme_lists_every_setting():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for variable, _default, _ in table():
        assert f"| `{variable}` |" in readme, variable


def test_settings_follow_the_environment(monkeypatch):
    monkeypatch.setenv("DETECTOR_LANGUAGE", "EN")
    monkeypatch.setenv("DETECTOR_XLSX_MAX_COLUMNS", "7")
    assert settings().language == "en" and settings().max_columns == 7
    monkeypatch.setenv("DETECTOR_LANGUAGE", "klingon")
    assert settings().language == "es"  # an unknown language falls back to Spanish
    assert isinstance(settings(), Settings)
