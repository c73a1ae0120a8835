"""Differentiable image augmentations used by methods (DiffAugment, ADA)."""
