"""Baseline: choose the number of mixture components by BIC, one fit after another.

Usage: python gmm_bic_loop.py DATA.csv KMAX SEED
Prints the chosen K and every BIC as JSON.
"""

import json
import sys

import pandas as pd
from sklearn.mixture import GaussianMixture

data, kmax, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
X = pd.read_csv(data).to_numpy()
bic = {k: GaussianMixture(k, random_state=seed).fit(X).bic(X) for k in range(1, kmax + 1)}
print(json.dumps({"components": min(bic, key=bic.__getitem__), "bic": bic}))
