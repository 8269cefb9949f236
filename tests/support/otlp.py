"""Test-side names for the network helpers the package ships."""

from torchelastic_otel.demo.collector import free_port

__all__ = ["free_port"]
