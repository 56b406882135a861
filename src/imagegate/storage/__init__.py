"""Where generated images are kept when a client asks for a URL instead of bytes."""
