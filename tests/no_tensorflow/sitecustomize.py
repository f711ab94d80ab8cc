"""On ``PYTHONPATH``, makes this interpreter behave as if TensorFlow were not installed (as on
the GPU machine): ``import tensorflow`` raises ``ModuleNotFoundError``. Used by
tests/test_backends.py and tests/test_gpu_paper_run.py for the JAX and PyTorch subprocesses."""

import sys
from importlib.abc import MetaPathFinder


class _NoTensorFlow(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
