"""What operators see: health and readiness, Prometheus metrics, structured logs with request
ids. Other packages import the metric objects from ``sync_server.observability.metrics``."""
