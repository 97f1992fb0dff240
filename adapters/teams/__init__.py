"""adapters/teams."""
