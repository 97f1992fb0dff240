"""RQ entry points: thin functions, imported by dotted path, taking only primitives."""
