"""The generic GAN training loop, losses, EMA, checkpoints and exact resume."""
