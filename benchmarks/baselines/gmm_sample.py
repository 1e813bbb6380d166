"""Baseline: draw rows from a pickled GaussianMixture and write them as CSV, all in memory.

Usage: python gmm_sample.py MODEL.pkl N OUT.csv
"""

import pickle
import sys

import pandas as pd

model, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(model, "rb") as f:
    gm = pickle.load(f)
X, _ = gm.sample(n)
pd.DataFrame(X, columns=[f"c{j}" for j in range(X.shape[1])]).to_csv(out, index=False)
