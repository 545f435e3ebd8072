"""flashbulb: self-hosted image generation and editing behind the Gemini API, metered."""

__version__ = "0.1.0"
