"""scikit-learn's lbfgs on the rows `touchpoint-train bench-lr --npy DIR` wrote (C=1, no scaling:
the features are standard normal already). Prints the fit time and the test ROC AUC.

Usage: python3 bench_lr.py DIR
"""
import sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

d = sys.argv[1]
X, y = np.load(f"{d}/X_train.npy"), np.load(f"{d}/y_train.npy")
Xt, yt = np.load(f"{d}/X_test.npy"), np.load(f"{d}/y_test.npy")
t = time.time()
m = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000).fit(X, y)
secs = time.time() - t
print(f"scikit-learn lbfgs (C=1): {secs:8.2f} s  {m.n_iter_[0]} iterations  test ROC AUC {roc_auc_score(yt, m.predict_proba(Xt)[:, 1]):.5f}  ({X.shape[0]} x {X.shape[1]})")
