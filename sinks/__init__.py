"""Sink implementations; ``sinks.base`` holds only the contract."""
