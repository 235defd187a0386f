"""convnet's Hydra configs: this folder ships in the wheel as the package convnet.configs.

Hydra reads it as `pkg://convnet.configs` (convnet.compose.CONFIG_PATH); pyproject.toml maps
the package onto this folder, so there is one copy of every config.
"""
