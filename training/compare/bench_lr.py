"""scikit-learn's logistic regression on the rows `touchpoint-train bench-lr --npy DIR` wrote
(C=1, no scaling: the features are standard normal already). Prints the fit time and the test
ROC AUC as one line.

Usage: python3 bench_lr.py DIR [--solver lbfgs|newton-cholesky|liblinear] [--threads N]

--threads sets OMP_NUM_THREADS and OPENBLAS_NUM_THREADS (and MKL_NUM_THREADS) before numpy is
imported, which is what bounds scikit-learn's BLAS and OpenMP work.
"""
import argparse, os

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--solver", default="lbfgs")
ap.add_argument("--threads", type=int, default=None)
a = ap.parse_args()
if a.threads is not None:
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)

import time  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

d = a.dir
X, y = np.load(f"{d}/X_train.npy"), np.load(f"{d}/y_train.npy")
Xt, yt = np.load(f"{d}/X_test.npy"), np.load(f"{d}/y_test.npy")
t = time.perf_counter()
m = LogisticRegression(C=1.0, solver=a.solver, max_iter=1000).fit(X, y)
secs = time.perf_counter() - t
auc = roc_auc_score(yt, m.predict_proba(Xt)[:, 1])
print(f"scikit-learn {a.solver} (C=1, threads={a.threads or 'default'}): {secs:8.3f} s  {m.n_iter_[0]} iterations  test ROC AUC {auc:.5f}  ({X.shape[0]} x {X.shape[1]})")
