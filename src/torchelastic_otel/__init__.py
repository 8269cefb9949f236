"""OpenTelemetry for elastic PyTorch training jobs.

``torchelastic_otel.events`` is a drop-in reimplementation of
``torch.distributed.elastic.events``. Importing this package imports neither torch
nor OpenTelemetry.
"""

__version__ = "0.1.0"
