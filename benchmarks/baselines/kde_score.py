"""Baseline: score query rows with scikit-learn's exact KernelDensity, in data units.

Usage: python kde_score.py TRAIN.csv QUERY.csv BANDWIDTH OUT.npy
Standardizes as gencli does (training mean and std, ddof=0), fits KernelDensity with its
default (exact: atol=rtol=0) settings on the standardized rows, and adds the Jacobian so the
log-densities are in the data's own units, comparable with ``gencli score``.
"""

import sys

import numpy as np
import pandas as pd
from sklearn.neighbors import KernelDensity

train, query, bandwidth, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
X = pd.read_csv(train).to_numpy()
Q = pd.read_csv(query).to_numpy()
shift, scale = X.mean(axis=0), X.std(axis=0)
kde = KernelDensity(bandwidth=bandwidth).fit((X - shift) / scale)
log_density = kde.score_samples((Q - shift) / scale) - np.sum(np.log(scale))
np.save(out, log_density)
