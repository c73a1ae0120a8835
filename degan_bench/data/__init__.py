"""Datasets: the registry of official sources, preparation into a verified store, and subset rules."""
