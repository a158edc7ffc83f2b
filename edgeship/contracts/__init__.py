"""Contracts: one module per artifact (typed dataclass, load/save/validate, its one list of keys)."""
