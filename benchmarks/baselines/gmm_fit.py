"""Baseline: the ten-line script a user would write to fit a Gaussian mixture.

Usage: python gmm_fit.py DATA.csv MODEL.pkl K SEED
Prints the mean log-likelihood per row (data units) as JSON.
"""

import json
import pickle
import sys

import pandas as pd
from sklearn.mixture import GaussianMixture

data, out, k, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
X = pd.read_csv(data).to_numpy()
gm = GaussianMixture(k, random_state=seed).fit(X)
with open(out, "wb") as f:
    pickle.dump(gm, f)
print(json.dumps({"mean_log_likelihood": gm.score(X), "iterations": int(gm.n_iter_)}))
