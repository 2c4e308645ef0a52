"""scripts/devstack implementation (stdlib only)."""
