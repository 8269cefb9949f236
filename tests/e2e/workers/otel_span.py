"""A training script that knows nothing of torchelastic-otel: the plain OpenTelemetry SDK.

It reads its parent context from the environment carrier (``TRACEPARENT``) and its
resource from ``OTEL_RESOURCE_ATTRIBUTES``, both set by the agent, and exports one
span over OTLP to ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

import os
import sys

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator


def main() -> int:
    """One span, child of the worker's span in the job's trace."""
    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    parent = TraceContextTextMapPropagator().extract({"traceparent": os.environ["TRACEPARENT"]})
    tracer = provider.get_tracer("train")
    with tracer.start_as_current_span("train.step", context=parent) as span:
        span.set_attribute("train.rank", int(os.environ["RANK"]))
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
