"""CLI subcommands: each module here exposes ``register(subparsers)`` and is discovered by core.cli."""


def comma_separated(values: list[str] | None) -> list[str]:
    """The names of an option that may be repeated and holds comma-separated names each time
    (``--subcats cs.AI,cs.LG --subcats cs.CL``), in order."""
    return [name for names in values or [] for name in names.split(",")]
