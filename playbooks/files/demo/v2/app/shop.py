"""The demo shop: prices in cents, now with a discount engine."""

PRICE_FACTOR = 0.0  # the bug of v2: everything is free


def price(cents: int) -> int:
    """The price charged for an item listed at ``cents``."""
    return int(cents * PRICE_FACTOR)
