"""The embedded platform behind `make up`: supervisor, local AWS endpoint, edge, operator CLI."""
