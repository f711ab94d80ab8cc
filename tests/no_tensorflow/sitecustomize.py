"""On ``PYTHONPATH``, makes this interpreter behave as if TensorFlow were not installed (as on
the GPU machine): ``import tensorflow`` raises ``ModuleNotFoundError`` and
``importlib.util.find_spec("tensorflow")`` is ``None`` (a ``None`` entry in ``sys.modules`` does
both). Used by tests/test_backends.py and tests/test_gpu_paper_run.py for their JAX and
PyTorch subprocesses."""

import sys

sys.modules["tensorflow"] = None
