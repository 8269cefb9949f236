"""``torchelastic-otel timeline``: a job's rendezvous timeline, with no backend needed."""
