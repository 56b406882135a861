"""OpenAI's Images API, exactly as the official SDK speaks it."""
