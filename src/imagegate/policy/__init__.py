"""Policy: who the client is, and whether its request is well-formed, before any upstream spend."""
