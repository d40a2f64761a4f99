"""The command line in its user's language (``DETECTOR_LANGUAGE``, Spanish by default), like
the dashboard: messages, tables, ``--help`` and the words typer writes itself.

The commands' and options' help texts are catalogue entries (``N_``): the command tree
typer builds for each invocation is worded in the language just before it parses
(:class:`SpokenGroup`, for ``detector …`` and for a test's ``CliRunner`` alike). typer
writes its own words in two ways, and both are reached: its modules call the standard
library's ``gettext`` (which finds catalogues only as compiled files named by the locale
variables), so their ``_`` is pointed at this project's catalogue, and its panel titles,
worded once on import, are worded again; the click it carries writes English f-strings
("Usage: ", "Show this message and exit.", "Missing argument …"), so the usage line, the
help option and the common errors are said again on their way out. In English all of it
reads as before.
"""

from __future__ import annotations

import gettext
import importlib
import importlib.abc
import importlib.util
import re
import sys

from typer.core import TyperGroup

from detector import i18n
from detector.i18n import N_


def lang() -> str:
    return i18n.default_language()


def _(message: str) -> str:
    """A message of the command line in its user's language."""
    return i18n.translate(lang(), message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return i18n.translate_plural(lang(), singular, plural, n)


def number(value: float | int | None, decimals: int | None = None) -> str:
    return i18n.number(value, lang(), decimals)


def words(value: str | None) -> str:
    return i18n.words(value, lang()) or ""


# What typer writes itself (its gettext message ids, and the English of the click it
# carries): listed so that scripts/i18n.sh extracts them for the catalogue.
BUILT_IN = (
    N_("Usage:"),
    N_("Show this message and exit."),
    N_("[OPTIONS]"),
    N_("COMMAND [ARGS]..."),
    N_("Install completion for the current shell."),
    N_("Show completion for the current shell, to copy it or customize the installation."),
    N_("Aborted!"),
    N_("Missing command."),
    N_("No such command {name!r}."),
    N_("(dynamic)"),
    N_("default: {default}"),
    N_("env var: {var}"),
    N_("required"),
)


# How typer shows the kind of value an option takes ("<path>"), in words.
VALUE_KINDS = {
    "<bool>": N_("<yes/no>"),
    "<int>": N_("<integer>"),
    "<int range>": N_("<integer range>"),
    "<path>": N_("<path>"),
    "<str>": N_("<text>"),
    "<float>": N_("<decimal>"),
}
# typer's words, set once when it is imported (typer.rich_utils): the English, to word anew.
_TYPER_WORDS = {
    "DEPRECATED_STRING": N_("(deprecated) "),
    "DEFAULT_STRING": N_("[default: {}]"),
    "ENVVAR_STRING": N_("[env var: {}]"),
    "REQUIRED_LONG_STRING": N_("[required]"),
    "ARGUMENTS_PANEL_TITLE": N_("Arguments"),
    "OPTIONS_PANEL_TITLE": N_("Options"),
    "COMMANDS_PANEL_TITLE": N_("Commands"),
    "ERRORS_PANEL_TITLE": N_("Error"),
    "ABORTED_TEXT": N_("Aborted."),
    "RICH_HELP": N_("Try [blue]'{command_path} {help_option}'[/] for help."),
}


# typer's own click writes its errors in English f-strings: the common ones, recognised,
# are said again through the catalogue (the rest stay as click wrote them).
ERRORS = (
    (re.compile(r"^Missing argument (?P<name>.+)\.$"), N_("Missing argument {name}.")),
    (re.compile(r"^Missing option (?P<name>.+)\.$"), N_("Missing option {name}.")),
    (re.compile(r"^No such option: (?P<name>\S+)"), N_("No such option: {name}")),
    (
        re.compile(r"^Got unexpected extra argument\(s\) \((?P<args>.*)\)$"),
        N_("Got unexpected extra argument(s) ({args})"),
    ),
    (
        re.compile(r"^Invalid value for (?P<name>[^:]+): (?P<problem>.*)$", re.S),
        N_("Invalid value for {name}: {problem}"),
    ),
)


def _error(message: str) -> str:
    for pattern, template in ERRORS:
        found = pattern.match(message)
        if found:
            return _(template).format(**found.groupdict()) + message[found.end() :]
    return message


def _spoken_errors(show):
    """typer's error panel, its message said in the current language."""

    def rich_format_error(error) -> None:
        message = error.format_message()
        error.format_message = lambda: _error(message)
        return show(error)

    rich_format_error.spoken = True
    return rich_format_error


def _speak_libraries() -> None:
    """typer's own words through this catalogue, in the current language. Its help and
    error panels (``typer.rich_utils``, with rich's Markdown: a tenth of a second) are
    worded when typer first imports them, which a command that shows neither never does."""
    core = importlib.import_module("typer.core")
    if getattr(core, "_", None) in (gettext.gettext, _):
        core._ = _
    panels = sys.modules.get("typer.rich_utils")
    if panels is not None:
        _speak_panels(panels)
    elif not any(isinstance(f, _OnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _OnImport("typer.rich_utils", _speak_panels))


def _speak_panels(rich_utils) -> None:
    if getattr(rich_utils, "_", None) in (gettext.gettext, _):
        rich_utils._ = _
    for constant, english in _TYPER_WORDS.items():
        setattr(rich_utils, constant, _(english))
    if not getattr(rich_utils.rich_format_error, "spoken", False):
        rich_utils.rich_format_error = _spoken_errors(rich_utils.rich_format_error)


class _OnImport(importlib.abc.MetaPathFinder):
    """Calls ``then(module)`` once the module ``name`` is imported (and leaves the import
    machinery as it found it)."""

    def __init__(self, name: str, then) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run, then = spec.loader.exec_module, self.then

        def exec_module(module) -> None:
            run(module)
            then(module)

        spec.loader.exec_module = exec_module
        return spec


def speak(command) -> None:
    """Word a command tree in the current language: its help texts, the kind of value each
    option takes, its usage line and its own --help."""
    command.help = _(command.help) if command.help else command.help
    if command.short_help:
        command.short_help = _(command.short_help)
    if command.options_metavar == "[OPTIONS]":
        command.options_metavar = _("[OPTIONS]")
    for param in command.params:
        _speak_param(param)
    usage, help_option = command.get_usage, command.get_help_option

    def get_usage(ctx):  # typer's own click writes "Usage: " itself
        text = usage(ctx)
        return _("Usage:") + text[len("Usage:") :] if text.startswith("Usage:") else text

    def get_help_option(ctx):
        option = help_option(ctx)
        if option is not None and option.help == "Show this message and exit.":
            option.help = _(option.help)
            _speak_param(option, worded=True)
        return option

    command.get_usage, command.get_help_option = get_usage, get_help_option
    if isinstance(getattr(command, "commands", None), dict):  # a group (typer's own click)
        if command.subcommand_metavar == "COMMAND [ARGS]...":
            command.subcommand_metavar = _("COMMAND [ARGS]...")
        for sub in command.commands.values():
            speak(sub)


def _speak_param(param, worded: bool = False) -> None:
    if getattr(param, "help", None) and not worded:
        param.help = _(param.help)
    if getattr(param, "metavar", None) and not worded:
        param.metavar = _(param.metavar)
    shown = getattr(param, "display_type_rich", None)
    if shown is None:
        return

    def display_type_rich(ctx, _shown=shown):
        text = _shown(ctx=ctx)
        return _(VALUE_KINDS[text]) if text in VALUE_KINDS else text

    param.display_type_rich = display_type_rich


class SpokenGroup(TyperGroup):
    """The top of the command line: worded in its user's language before it runs (for
    ``detector …`` and for a test's ``CliRunner``, which both call ``main``)."""

    def main(self, *args, **kwargs):
        _speak_libraries()
        speak(self)
        return super().main(*args, **kwargs)
