"""convnet: train and understand convolutional image classifiers."""

import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"


def _configs_of_a_checkout() -> None:
    """Make the checkout's configs/ the package convnet.configs where it is not one already.

    Installing (`pip install -e .`, a wheel) maps the top-level configs/ onto convnet.configs
    (pyproject.toml); a checkout used without installing, with src/ on PYTHONPATH, has no such
    package, and no script could find its configs. There the folder beside src/ is loaded
    under that name, as the install would have it.
    """
    if importlib.util.find_spec("convnet.configs") is not None:
        return
    folder = Path(__file__).resolve().parents[2] / "configs"
    if not (folder / "__init__.py").is_file():
        return  # an install that lacks its configs: importing them fails, as it should
    spec = importlib.util.spec_from_file_location(
        "convnet.configs", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["convnet.configs"] = module
    spec.loader.exec_module(module)


_configs_of_a_checkout()
