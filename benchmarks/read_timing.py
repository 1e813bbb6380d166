"""Time gencli's CSV reader against pandas' default reader on one file, in one process.

Usage: python read_timing.py DATA.csv REPEAT
Prints JSON: each reader's times (alternating, after one untimed warm-up read each) and the
largest difference between the values they read, so a fast reader cannot be a wrong one.
"""

from __future__ import annotations

import json
import sys
import time


def main(path: str, repeat: int) -> None:
    """Read ``path`` ``repeat`` times with each reader, alternating which goes first."""
    import numpy as np
    import pandas as pd

    from gencli.io.data import read_table

    readers = {
        "gencli": lambda: read_table(path).values,
        "pandas": lambda: pd.read_csv(path).to_numpy(),
    }
    arrays = {name: read() for name, read in readers.items()}
    times: dict[str, list[float]] = {name: [] for name in readers}
    for i in range(repeat):
        order = list(readers) if i % 2 == 0 else list(reversed(readers))
        for name in order:
            start = time.perf_counter()
            readers[name]()
            times[name].append(time.perf_counter() - start)
    a, b = arrays["gencli"], arrays["pandas"]
    difference = float(np.max(np.abs(a - b))) if a.shape == b.shape else None
    print(json.dumps({"times": times, "shape": list(a.shape), "max_abs_difference": difference}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
