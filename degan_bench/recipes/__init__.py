"""Recipe files: loading with ``extends``, presets, ``--set`` overrides, strict validation and hashing."""
