"""titlecraft core: everything except the terminal UI (models, generation, store, data, training)."""
