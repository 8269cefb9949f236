"""Test-side names for the receiver and collector helpers the package ships."""

from torchelastic_otel.otlp_data import Received
from torchelastic_otel.receiver import OtlpHttpReceiver
from torchelastic_otel.rotel import Rotel, free_port, run_rotel, wait_port

__all__ = ["OtlpHttpReceiver", "Received", "Rotel", "free_port", "run_rotel", "wait_port"]
