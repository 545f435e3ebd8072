"""Batch jobs: the files they read and write (files.py), their rows (queue.py) and the in-process
runner that works through them at batch priority (runner.py)."""
