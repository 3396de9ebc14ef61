"""ae_lab: autoencoders and their latent spaces, as Lightning modules composed by Hydra."""

__version__ = "0.1.0"
