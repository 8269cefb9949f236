"""Reading OTLP JSON files for the timeline."""

from pathlib import Path

from torchelastic_otel.otlp_data import Received, read_otlp_json


def load(paths: list[Path]) -> Received:
    """Read OTLP JSON files into one :class:`Received`."""
    received = Received()
    for path in paths:
        read_otlp_json(path, into=received)
    return received
