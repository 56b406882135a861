"""After the router: verify what came back, convert it where the client asked for another format."""
