"""Shared fixtures. Per-area helpers live in tests/support_*.py modules."""
