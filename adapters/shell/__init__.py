"""adapters/shell."""
