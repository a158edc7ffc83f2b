"""publish: upload a chosen variant to an immutable Cloud Storage version folder (manifest last)."""
