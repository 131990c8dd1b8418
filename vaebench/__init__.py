"""vaebench: train and compare variational autoencoders honestly."""

__version__ = "0.1.0"
