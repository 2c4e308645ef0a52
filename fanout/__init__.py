"""fanout: fan one stream of CDC events out to many stores, each kept exactly in step."""

__version__ = "0.1.0"
