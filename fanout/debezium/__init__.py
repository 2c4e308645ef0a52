"""Debezium decoding: a Kafka message becomes a ``ChangeEvent`` (envelope forms, JSON framing,
logical types, versions)."""
