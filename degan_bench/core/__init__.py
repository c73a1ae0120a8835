"""The ground floor every other layer may import: run directories and checkpoints, crash-safe file
writes, and process-group helpers. It imports nothing above it (no training, metrics or methods)."""
