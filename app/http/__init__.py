"""The HTTP layer: routes that read a snapshot and never touch the store."""
