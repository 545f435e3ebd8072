"""Generative models through Hugging Face diffusers: the catalog, their weights on disk, the backend."""
