"""On PYTHONPATH, makes the generative stack unimportable: a Python as `make run` installs it (the
offline photo engine only), inside the test suite's full install (tests/test_install.py)."""

import sys

NOT_INSTALLED = {"torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub"}


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in NOT_INSTALLED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
