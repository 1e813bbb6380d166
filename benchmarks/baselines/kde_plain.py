"""Baseline: score query rows with a Gaussian KDE as a plain script would, in data units.

Usage: python kde_plain.py TOOL TRAIN.csv QUERY.csv BANDWIDTH OUT.npy
TOOL is one of:
- scipy: ``scipy.stats.gaussian_kde`` on the raw rows with its own Scott factor (a full
  bandwidth matrix: a different density from gencli's, so timed but not compared);
- sklearn: ``KernelDensity(bandwidth=BANDWIDTH, rtol=1e-6)`` on rows standardized as
  gencli does (training mean and std, ddof=0), plus the Jacobian;
- kdepy: ``KDEpy.TreeKDE(bw=BANDWIDTH)`` on the same standardized rows, plus the Jacobian.
"""

import sys

import numpy as np
import pandas as pd

tool, train, query, bandwidth, out = sys.argv[1:6]
h = float(bandwidth)
X = pd.read_csv(train).to_numpy()
Q = pd.read_csv(query).to_numpy()
if tool == "scipy":
    from scipy.stats import gaussian_kde

    log_density = gaussian_kde(X.T).logpdf(Q.T)
else:
    shift, scale = X.mean(axis=0), X.std(axis=0)
    Z, ZQ = (X - shift) / scale, (Q - shift) / scale
    if tool == "sklearn":
        from sklearn.neighbors import KernelDensity

        log_density = KernelDensity(bandwidth=h, rtol=1e-6).fit(Z).score_samples(ZQ)
    elif tool == "kdepy":
        from KDEpy import TreeKDE

        with np.errstate(divide="ignore"):
            log_density = np.log(TreeKDE(bw=h).fit(Z).evaluate(ZQ))
    else:
        raise SystemExit(f"unknown tool {tool}")
    log_density = log_density - np.sum(np.log(scale))
np.save(out, log_density)
