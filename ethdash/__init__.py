"""ethdash: compare language-model answer distributions with human vote splits."""

__version__ = "0.1.0"
