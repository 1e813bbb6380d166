"""Baseline: seconds per EM iteration of scikit-learn's GaussianMixture with every row in memory.

Usage: python gmm_iteration.py FOLDER_OR_FILE K ITERATIONS
Reads the Parquet file(s) with pyarrow, then times a fit of ITERATIONS iterations and one of
a single iteration from the same start (random rows as means, so no k-means), and prints
(t_many - t_one) / (ITERATIONS - 1) as JSON: one E-step plus one M-step over every row.
"""

import json
import sys
import time
import warnings

import numpy as np
import pyarrow.parquet as pq
from sklearn.mixture import GaussianMixture

path, k, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
X = np.ascontiguousarray(pq.read_table(path).to_pandas().to_numpy(dtype=np.float64))
times = []
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for steps in (1, iterations):
        started = time.perf_counter()
        GaussianMixture(
            k, init_params="random_from_data", max_iter=steps, tol=0.0, random_state=0
        ).fit(X)
        times.append(time.perf_counter() - started)
per_iteration = (times[1] - times[0]) / (iterations - 1)
print(json.dumps({"seconds_per_iteration": per_iteration, "rows": int(X.shape[0])}))
