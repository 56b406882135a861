"""The shared vocabulary: request, result, deployment, errors. Imports nothing from imagegate."""
