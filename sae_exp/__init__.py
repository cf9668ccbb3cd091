"""sae_exp: top-k sparse autoencoders on language-model activations, and feature-overlap reports."""

__version__ = "0.1.0"
