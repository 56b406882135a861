"""Durable state: client keys and the ledger, on SQLite (embedded) or PostgreSQL (shared)."""
