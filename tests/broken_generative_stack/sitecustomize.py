"""On PYTHONPATH, makes `import torch` fail the way a broken install does (found, then an error that
is not ImportError while loading): a server must still serve every other model (tests/test_install.py)."""

import importlib.abc
import importlib.machinery
import sys


class _Broken(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise RuntimeError("libtorch_cuda.so: undefined symbol (a broken install, made by tests/broken_generative_stack)")


class _BrokenTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, _Broken()) if name == "torch" else None


sys.meta_path.insert(0, _BrokenTorch())
