"""select: the quality gate that picks one variant and decides whether to publish it."""
