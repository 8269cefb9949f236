"""Every environment variable the ``otel`` destination reads, declared once.

The standard ``OTEL_*`` variables keep their meaning from the OpenTelemetry
specification. The exporters read endpoint, timeout, client keys, ``insecure`` and
(over gRPC) the certificate themselves (``OTEL_EXPORTER_OTLP_*`` and their
per-signal ``..._LOGS_...``/``..._TRACES_...`` forms); the resource reads
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``. Listed here are the ones
this package reads itself.
"""

OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
"""``true`` turns the ``otel`` destination into a no-op (events are dropped silently).
As the specification says (and the SDK does), only ``true`` is true: any other value
but ``false`` warns once and reads as false."""

OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""The collector, with its scheme (``http://collector:4317``); the exporters read it.
Without a scheme this package warns and uses ``http://`` (the gRPC exporter would
otherwise try TLS and fail with handshake errors that do not say why)."""

OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""``grpc`` (default) or ``http/protobuf``, for both signals."""

OTEL_EXPORTER_OTLP_LOGS_PROTOCOL = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
"""Protocol for logs; overrides ``OTEL_EXPORTER_OTLP_PROTOCOL``."""

OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
"""Protocol for traces; overrides ``OTEL_EXPORTER_OTLP_PROTOCOL``."""

OTEL_LOGS_EXPORTER = "OTEL_LOGS_EXPORTER"
"""``otlp`` (default), ``console`` or ``none``: where the log records go."""

OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
"""``otlp`` (default), ``console`` or ``none``: where the spans go."""

OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
"""``otlp`` (default), ``prometheus`` (a scrape endpoint), ``console`` or ``none``;
comma-separated for several."""

OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"
"""Milliseconds between two metric exports (default 60000); there is one more at exit."""

OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
"""Protocol for metrics; overrides ``OTEL_EXPORTER_OTLP_PROTOCOL``."""

OTEL_EXPORTER_OTLP_METRICS_COMPRESSION = "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"
"""Compression for metrics; overrides ``OTEL_EXPORTER_OTLP_COMPRESSION``."""

OTEL_EXPORTER_PROMETHEUS_HOST = "OTEL_EXPORTER_PROMETHEUS_HOST"
"""Where ``OTEL_METRICS_EXPORTER=prometheus`` serves its scrape endpoint (default
``localhost``)."""

OTEL_EXPORTER_PROMETHEUS_PORT = "OTEL_EXPORTER_PROMETHEUS_PORT"
"""... and on which port (default 9464). A port in use gives one warning."""

OTEL_EXPORTER_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
"""``key=value,...`` headers; validated here so a malformed value gives one clear warning."""

OTEL_EXPORTER_OTLP_LOGS_HEADERS = "OTEL_EXPORTER_OTLP_LOGS_HEADERS"
"""Headers for logs only (validated like ``OTEL_EXPORTER_OTLP_HEADERS``)."""

OTEL_EXPORTER_OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
"""Headers for traces only (validated like ``OTEL_EXPORTER_OTLP_HEADERS``)."""

OTEL_EXPORTER_OTLP_METRICS_HEADERS = "OTEL_EXPORTER_OTLP_METRICS_HEADERS"
"""Headers for metrics only (validated like ``OTEL_EXPORTER_OTLP_HEADERS``)."""

OTEL_EXPORTER_OTLP_COMPRESSION = "OTEL_EXPORTER_OTLP_COMPRESSION"
"""``gzip``, ``deflate`` or ``none`` (anything else: one warning, ``gzip``), for every
signal without its own setting. Default here ``gzip``, not the spec's none:
a batch of event records is very repetitive, and over gRPC on loopback gzip made a
512-record export ~8x faster (17 ms to 2 ms), which is what throughput hinged on.
Every OTLP receiver accepts gzip."""

OTEL_EXPORTER_OTLP_LOGS_COMPRESSION = "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"
"""Compression for logs; overrides ``OTEL_EXPORTER_OTLP_COMPRESSION``."""

OTEL_EXPORTER_OTLP_TRACES_COMPRESSION = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
"""Compression for traces; overrides ``OTEL_EXPORTER_OTLP_COMPRESSION``."""

OTEL_EXPORTER_OTLP_CERTIFICATE = "OTEL_EXPORTER_OTLP_CERTIFICATE"
"""The CA bundle to trust. Over HTTP this package hands it to the exporter's session
(so that ``REQUESTS_CA_BUNDLE`` cannot override it); the gRPC exporter reads it."""

OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE = "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"
"""The CA bundle for logs; overrides ``OTEL_EXPORTER_OTLP_CERTIFICATE``."""

OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"
"""The CA bundle for traces; overrides ``OTEL_EXPORTER_OTLP_CERTIFICATE``."""

OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE = "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE"
"""The CA bundle for metrics; overrides ``OTEL_EXPORTER_OTLP_CERTIFICATE``."""

OTEL_TRACES_SAMPLER = "OTEL_TRACES_SAMPLER"
"""Not applied to this package's spans, on either export path: every node keeps
every span (a head sampler could keep one node's part of a cycle and drop its
neighbour's). A value other than ``always_on``/``parentbased_always_on`` warns
once. An application's own global ``TracerProvider``, when it installed one, applies
its sampler to the spans it is given."""

OTEL_BLRP_MAX_QUEUE_SIZE = "OTEL_BLRP_MAX_QUEUE_SIZE"
"""Events held in memory waiting for export; beyond it new events are dropped and
counted. Default here 65536, not the spec's 2048: a job's burst of rendezvous events
must not be dropped (with 2048, 34-49% of a tight loop was lost)."""

OTEL_BLRP_SCHEDULE_DELAY = "OTEL_BLRP_SCHEDULE_DELAY"
"""Milliseconds between two exports when the batch is not full (default 1000)."""

OTEL_BLRP_MAX_EXPORT_BATCH_SIZE = "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"
"""Log records per export request (default 512)."""

OTEL_BSP_MAX_EXPORT_BATCH_SIZE = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
"""Spans per export request (default 512)."""

TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS = "TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS"
"""How long the exit flush waits on a collector that does not answer, in milliseconds
(default 1000). At exit the export worker keeps draining and exporting while the
collector takes batches; it gives up when one request has been waiting this long
(a collector that hangs), or at once when a request already failed and the SDK's
retry (after at least 0.8 s) could not come within it (a collector that is down);
what is left is counted as ``shutdown_*``. It bounds the wait on the collector, not
the interpreter's own teardown after it.
A signal whose batch the collector refuses stops at once (the others go on). The
worker's own work and the SDK's import at start-up do not count against it (see
``TORCHELASTIC_OTEL_SHUTDOWN_MAX_MS``)."""

TORCHELASTIC_OTEL_SHUTDOWN_MAX_MS = "TORCHELASTIC_OTEL_SHUTDOWN_MAX_MS"
"""The hard cap on the exit flush, in milliseconds (default 20000), however well the
collector answers: below Kubernetes' default 30 s termination grace period. 20 s
delivers 50,000 worker events (a log record and a span each) to a live collector on
a busy 2-core machine; what is left then is counted as ``shutdown_*``."""

TORCHELASTIC_OTEL_FAST_PATH = "TORCHELASTIC_OTEL_FAST_PATH"
"""``true`` (default): when this package creates the OTLP exporters, it builds their
protobuf requests itself (about five times cheaper than the SDK's objects), after
checking at start-up that the installed exporter accepts them; otherwise, and with
``false``, records and spans go through the SDK's own objects and encoders."""

TORCHELASTIC_OTEL_DROP_WARNING_INTERVAL_S = "TORCHELASTIC_OTEL_DROP_WARNING_INTERVAL_S"
"""Seconds between two warnings about dropped events or failed exports (default 60),
and between two repeats of one exporter message. ``0``: no rate limit (a "lost so
far" line whenever the counts changed, at most one per export cycle)."""

TORCHELASTIC_OTEL_CHATTER_SUMMARY_S = "TORCHELASTIC_OTEL_CHATTER_SUMMARY_S"
"""Seconds between two summaries of the rendezvous' keep-alive and sync chatter
(default 300: 12 records per node per hour instead of ~2,000); each summary counts
the events it stands for. ``0`` records every such event on its own."""

TORCHELASTIC_OTEL_TORCH_METRICS = "TORCHELASTIC_OTEL_TORCH_METRICS"
"""``true`` (default; or ``1``/``yes``/``on``): under torchrun, torch's own elastic metrics
(``torch.distributed.elastic.metrics``: ``workers.<role>.run_*``, each agent step's
``.success`` and ``.duration.ms``) are exported with the package's, about 25 more
metrics and 90 more Prometheus series per node (docs/operations.md); ``false``
leaves torch's metric handler as it is (so do ``0``/``no``/``off``)."""

TORCHELASTIC_OTEL_RDZV_EVENTS = "TORCHELASTIC_OTEL_RDZV_EVENTS"
"""``1`` (or ``true``/``yes``/``on``): under torchrun, also export the dynamic
rendezvous' own events (torch's ``dynamic_rendezvous`` destination), so rendezvous
rounds become spans.
Off by default, as in torch, where that destination is a ``NullHandler``."""

TORCHELASTIC_OTEL_TRACE_SHARD_NODES = "TORCHELASTIC_OTEL_TRACE_SHARD_NODES"
"""Nodes per trace (default 1000): a cycle of more nodes (and a run of more) is split in
shard traces by node rank, so that no trace passes Grafana Tempo's default 5 MB or the
~10,000 spans Jaeger's UI handles, at any job size (a node's part with 8 workers is
~2.4 KB: 1,000 nodes leave room for the resource attributes a collector adds). Every
node of a job must use the same value (the ids are derived from it). ``0``: never
split."""

TORCHELASTIC_OTEL_STALL_TIMEOUT_S = "TORCHELASTIC_OTEL_STALL_TIMEOUT_S"
"""Seconds a worker may go without a training step before its agent reports it
stalled (default 300); ``0`` turns progress reporting off (workers then start with no
progress file and no bootstrap on ``PYTHONPATH``). Under torchrun with the ``otel``
destination, each worker counts its ``optimizer.step()`` calls (or its
``torchelastic_otel.progress.step()`` calls) and the agent watches the count from a
worker's first step on. 300 s leaves room for a checkpoint save or an evaluation
pass, and is half NCCL's default collective timeout (10 min): a hang is reported
before torch gives up on it. A longer pause without steps is reported too (and its
end): raise the timeout above your longest such phase. The agent passes each worker
its file in ``TORCHELASTIC_OTEL_PROGRESS_FILE`` (set by the agent, not by users)."""
