"""The postgres sink."""

from sinks.postgres.sink import PostgresSink

__all__ = ["PostgresSink"]
