"""OpenTelemetry for elastic PyTorch training jobs.

``torchelastic_otel.events`` is a drop-in reimplementation of
``torch.distributed.elastic.events``; importing this package registers its
``otel`` destination there. Importing it imports neither torch nor OpenTelemetry.
"""

from torchelastic_otel import _destinations
from torchelastic_otel._version import __version__

_destinations.register()

__all__ = ["__version__"]
