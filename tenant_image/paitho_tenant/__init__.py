"""The Paitho tenant: the product the customer uses, with its own PostgreSQL."""

__version__ = "0.1.0"
