"""Baseline: score every row of a CSV with a pickled GaussianMixture, all in memory.

Usage: python gmm_score.py MODEL.pkl DATA.csv OUT.csv
"""

import pickle
import sys

import pandas as pd

model, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
with open(model, "rb") as f:
    gm = pickle.load(f)
X = pd.read_csv(data).to_numpy()
pd.DataFrame({"log_density": gm.score_samples(X)}).to_csv(out, index=False)
