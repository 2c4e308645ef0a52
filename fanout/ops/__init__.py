"""Operator commands: backfill, lag, offsets, DLQ inspection and replay."""
