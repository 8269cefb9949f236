"""Guards on what the OpenTelemetry exporters log about themselves.

Three filters, attached to every logger the exporters and the SDK's header parser
log through (found by name prefix once the exporters are imported: a filter on a
parent logger never sees its children's records, so each one gets its own):

* :class:`RateLimit` lets one record per (logger, message template) through per
  interval, so a dead collector gives one warning a minute, not one per batch.
* :class:`Hush` drops what an exporter logs about a failure we already reported
  in our own words (an endpoint that does not take a signal).
* :class:`Redact` replaces every known secret (the values of the
  ``OTEL_EXPORTER_OTLP_*HEADERS`` variables, and their malformed entries) in a
  record's text with ``***``. It looks for the secrets themselves, not for the
  SDK's wording, so a reworded SDK warning cannot leak a token.
"""

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from torchelastic_otel.otel import environment_variables as ev

# Loggers whose records may carry header values or repeat per failed export.
_PREFIXES = ("opentelemetry.exporter", "opentelemetry.util.re")

# Shorter "secrets" are not secrets, and would redact digits out of every message.
_MIN_SECRET_LENGTH = 4

_HEADER_VARIABLES = (
    ev.OTEL_EXPORTER_OTLP_HEADERS,
    ev.OTEL_EXPORTER_OTLP_LOGS_HEADERS,
    ev.OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    ev.OTEL_EXPORTER_OTLP_METRICS_HEADERS,
)


class RateLimit(logging.Filter):
    """Let one record per (logger, message template) through per interval."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True for the first record of its kind in each interval."""
        key = (record.name, record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        return True


class Redact(logging.Filter):
    """Replace each secret in a record's message with ``***`` (the record is kept)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True; rewrites the message when it contains a secret."""
        if not self.secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 -- a broken record: drop its args, keep it
            text = str(record.msg)
        redacted = text
        for secret in self.secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != text or record.exc_info:
            record.msg, record.args = redacted, ()
            # A traceback's text could hold a secret too; keep only its type.
            if record.exc_info and record.exc_info[1] is not None:
                record.msg = f"{redacted} ({type(record.exc_info[1]).__name__})"
            record.exc_info, record.exc_text = None, None
        return True


_hushed = threading.local()


def hush(on: bool) -> None:
    """Drop the exporters' records on this thread while ``on`` (we said it ourselves)."""
    _hushed.on = on


class Hush(logging.Filter):
    """Drops records logged on a thread that called ``hush(True)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False while this thread is hushed."""
        return not getattr(_hushed, "on", False)


def header_secrets(environ: Mapping[str, str]) -> set[str]:
    """Every value and every entry of the header variables, as written and URL-decoded."""
    from urllib.parse import unquote

    secrets: set[str] = set()
    for name in _HEADER_VARIABLES:
        raw = environ.get(name, "")
        for raw_entry in raw.split(","):
            entry = raw_entry.strip()
            if not entry:
                continue
            _, sep, value = entry.partition("=")
            for text in (value.strip(), entry) if sep else (entry,):
                secrets.update({text, unquote(text)})
    return secrets


def guard_exporter_loggers(interval_s: float, secrets: Iterable[str]) -> None:
    """Attach a :class:`Redact` and a :class:`RateLimit` to every exporter logger.

    Call it after the exporters were imported (their loggers exist then). Loggers
    already guarded are left as they are, so calling it again is harmless.
    """
    redact = Redact(secrets)
    limit = RateLimit(interval_s)
    quiet = Hush()
    logging.getLogger("opentelemetry.util.re")  # the header parser's, whether imported or not
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or not name.startswith(_PREFIXES):
            continue
        if any(isinstance(f, Redact) for f in logger.filters):
            continue
        # The rate limit first: it keys on the message template, before redaction
        # turns the template and its arguments into one text.
        logger.addFilter(quiet)
        logger.addFilter(limit)
        logger.addFilter(redact)
