"""edgeship test suite (a package: modules import as tests.<area>.<module>, so tests/components never shadows the real components package)."""
