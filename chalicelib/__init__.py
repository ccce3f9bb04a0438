"""Paitho control plane: signup, billing, licences, the tenant registry, routing and lifecycle."""
