"""GET /metrics: Prometheus text exposition (admin only). HTTP request counts and latencies
from a middleware (per process), and the queue, jobs, workers and artifacts read from the
database at scrape time (the same from any API process)."""
