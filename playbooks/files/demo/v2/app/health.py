"""Health of the shop: the share of test orders charged wrongly (0.0 = healthy, 1.0 = all wrong)."""
import os
import sys

sys.dont_write_bytecode = True  # leave the release tree as deployed
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shop  # noqa: E402  pylint: disable=wrong-import-position

CASES = {100: 100, 250: 250, 1999: 1999, 5: 5}
wrong = sum(1 for listed, expected in CASES.items() if shop.price(listed) != expected)
print(wrong / len(CASES))
