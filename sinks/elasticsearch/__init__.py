"""The elasticsearch sink."""

from sinks.elasticsearch.sink import ElasticsearchSink

__all__ = ["ElasticsearchSink"]
