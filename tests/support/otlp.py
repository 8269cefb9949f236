"""Test-side names for the receiver and collector helpers the package ships."""

from torchelastic_otel.demo.collector import Rotel, free_port, run_rotel, wait_port
from torchelastic_otel.otlp_data import Received
from torchelastic_otel.receiver import OtlpHttpReceiver

__all__ = ["OtlpHttpReceiver", "Received", "Rotel", "free_port", "run_rotel", "wait_port"]
