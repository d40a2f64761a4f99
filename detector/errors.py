"""Errors that carry what a user needs to fix the input: the file and what was expected."""


class DetectorError(Exception):
    """Base class: the message is shown to the user as one line."""


class FileError(DetectorError):
    """A whole file cannot be used (empty, binary, unknown format, no required columns).

    ``message`` is a catalogue entry and ``values`` fill its ``{names}``, so that the
    dashboard says it in the reader's language (:meth:`said`); ``str()`` is the English."""

    def __init__(self, source: str, message: str, **values):
        self.source = source
        self.template = message
        self.values = values
        self.message = message.format(**values) if values else message
        super().__init__(f"{source}: {self.message}")

    def said(self, lang: str) -> str:
        return said(self.source, self.template, self.values, lang)


def said(source: str, template: str, values: dict, lang: str) -> str:
    """A file's problem in ``lang``: "<file>: <message>", the fields it names by their
    headings and the record kinds in words (never ``seen_at`` or ``'events'``)."""
    from detector.i18n import SOURCE, field_name, translate, words

    def each(value, word) -> str:
        return ", ".join(word(v.strip()) for v in str(value).split(","))

    shown = dict(values or {})
    if lang != SOURCE:
        for key in ("field", "fields"):
            if key in shown:
                shown[key] = each(shown[key], lambda f: field_name(f, lang))
        for key in ("kind", "kinds"):
            if key in shown:
                shown[key] = each(shown[key], lambda k: words(k, lang) or k)
    text = translate(lang, template)
    return f"{source}: {text.format(**shown) if shown else text}"


class StoreBusy(DetectorError):
    """The DuckDB file stayed locked by another writer for longer than we wait."""
