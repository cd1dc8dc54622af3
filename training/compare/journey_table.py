"""scikit-learn on the feature table `touchpoint-train fit-journey --export-features` wrote:
fit on the `train` rows, ROC AUC on the `holdout` rows (StandardScaler + LR, C=1).

Usage: python3 journey_table.py features.csv   (or features.csv.gz)
"""
import gzip, sys
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

with (gzip.open if sys.argv[1].endswith(".gz") else open)(sys.argv[1], "rt", newline="") as f:
    df = pd.read_csv(f)
feats = [c for c in df.columns if c not in ("set", "label")]
tr, ho = df[df.set == "train"], df[df.set == "holdout"]
sc = StandardScaler().fit(tr[feats])
m = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(tr[feats]), tr.label)
p = m.predict_proba(sc.transform(ho[feats]))[:, 1]
print(f"scikit-learn holdout ROC AUC {roc_auc_score(ho.label, p):.4f}  (train {len(tr)} rows, holdout {len(ho)} rows, base rate {ho.label.mean():.4f})")
