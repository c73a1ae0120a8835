"""degan-bench: reproduce the results tables of data-efficient GAN papers."""

__version__ = "0.1.0"
