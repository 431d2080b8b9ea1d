"""CLI subcommands: each module here exposes ``register(subparsers)`` and is discovered by core.cli."""
