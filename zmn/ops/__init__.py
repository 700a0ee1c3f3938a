"""Operator tooling of the management node: backup/restore, service units, log files."""
