"""Delivery: registry reads (releases, channel state), the channel rule, the reference client."""
