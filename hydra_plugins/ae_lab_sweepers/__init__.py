"""ae_lab's Hydra sweepers (Hydra finds plugins in the ``hydra_plugins`` namespace package)."""
