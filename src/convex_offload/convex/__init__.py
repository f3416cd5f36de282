"""Convex's HTTP API: the client, and the value rules (sizes, field names) checked before sending."""
