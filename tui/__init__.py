"""titlecraft's Textual app: a thin shell over core."""
