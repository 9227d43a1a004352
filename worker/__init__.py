"""invoice-worker: batch invoicing with a file-drop interface."""

from worker import allocator

# First of all: the allocator's options count only if set before polars loads.
allocator.configure()

__version__ = "0.1.0"
