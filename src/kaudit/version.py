"""The package's version, in a module of its own so any layer can name it without
importing the top-level package (which loads the session and the recorder)."""

__version__ = "0.1.0"
