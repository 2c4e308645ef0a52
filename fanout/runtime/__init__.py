"""The runtime: consumer loop, delivery (retries, bisection), routing, DLQ, Kafka clients,
health and metrics."""
