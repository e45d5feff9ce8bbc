"""Shared fixtures. Per-area helpers live in tests/support_*.py modules."""

from tests.support_tls import certs  # noqa: F401
