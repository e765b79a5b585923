"""The demo shop: prices in cents."""

PRICE_FACTOR = 1.0


def price(cents: int) -> int:
    """The price charged for an item listed at ``cents``."""
    return int(cents * PRICE_FACTOR)
