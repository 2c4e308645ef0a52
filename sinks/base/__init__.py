"""What every sink shares: the contract, and the batch template each backend fills in."""

from sinks.base.contract import Sink

__all__ = ["Sink"]
