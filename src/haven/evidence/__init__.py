"""Evidence intake: ports to what the cloud says about itself, each with a real driver and a simulated one.

- metrics: Prometheus range queries (haven.evidence.prometheus; haven.evidence.metrics.RecordedMetrics
  answers from recordings for the pure core's tests);
- OpenStack's versioned notifications from the cloud's RabbitMQ (haven.evidence.nova), turned into the
  ranker's events and symptoms at this boundary.
"""
