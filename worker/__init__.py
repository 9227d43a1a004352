"""invoice-worker: batch invoicing with a file-drop interface."""

__version__ = "0.1.0"
