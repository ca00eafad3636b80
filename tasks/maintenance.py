"""Maintenance tasks sent by beat (retention)."""
