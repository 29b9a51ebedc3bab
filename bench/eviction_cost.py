#!/usr/bin/env python
"""What taking the oldest entry of a full cache costs, per entry: a dict's ``next(iter())`` and
delete against an ``OrderedDict``'s ``popitem(last=False)`` (``JoinMap``'s pending cache, the
feature store's queue; bench/HISTORY.md, thirty-seventh session). No servers needed.

    .venv/bin/python bench/eviction_cost.py [--size 200000]
"""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from typing import Any


def per_entry_us(cache: Any, size: int, ordered: bool) -> float:
    """Fill ``cache`` with ``size`` tuple keys, then insert ``size`` more, each evicting the
    oldest; µs per insert and eviction."""
    for i in range(size):
        cache[(str(i), "e")] = i
    started = time.perf_counter()
    for i in range(size, 2 * size):
        cache[(str(i), "e")] = i
        if len(cache) > size:
            if ordered:
                cache.popitem(last=False)
            else:
                del cache[next(iter(cache))]
    return (time.perf_counter() - started) / size * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000, help="entries the cache holds")
    size = parser.parse_args().size
    print(f"dict, next(iter()) and del: {per_entry_us({}, size, False):.2f} µs per entry")
    print(f"OrderedDict, popitem:       {per_entry_us(OrderedDict(), size, True):.2f} µs per entry")


if __name__ == "__main__":
    main()
