"""scikit-learn reference for `touchpoint-train fit-table` on Online Shoppers, on the same folds.

Usage (from the repository root):
python3 training/compare/online_shoppers.py data/online_shoppers_intention.csv.gz folds.csv
(a plain .csv works too; folds.csv from `touchpoint-train fit-table ... --cv 5 --folds-out folds.csv`).
Preprocessing as the trainer's: Month, VisitorType and Weekend one-hot (every category),
everything standardised on the training folds, L2 logistic regression with C=1.
"""
import gzip, sys, time
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

data, folds_csv = sys.argv[1], sys.argv[2]
with (gzip.open if data.endswith(".gz") else open)(data, "rt", newline="") as f:
    df = pd.read_csv(f)
y = df.pop("Revenue").astype(str).str.upper().eq("TRUE").to_numpy()
X = pd.get_dummies(df.astype({"Weekend": str}), columns=["Month", "VisitorType", "Weekend"]).astype(float).to_numpy()
# folds.csv `row` is the 1-based data row of the input file: align on it (rows the trainer
# skipped are absent from it).
fo = pd.read_csv(folds_csv)
X, y = X[fo["row"].to_numpy() - 1], y[fo["row"].to_numpy() - 1]
folds = fo["fold"].to_numpy()

def cv(fold_of):
    aucs = []
    for k in np.unique(fold_of):
        tr, te = fold_of != k, fold_of == k
        sc = StandardScaler().fit(X[tr])
        m = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(X[tr]), y[tr])
        aucs.append(roc_auc_score(y[te], m.predict_proba(sc.transform(X[te]))[:, 1]))
    return np.array(aucs)

t = time.time()
same = cv(folds)
print(f"scikit-learn, the trainer's folds: ROC AUC per fold {np.round(same, 4).tolist()}  mean {same.mean():.4f}  ({time.time() - t:.1f} s)")
own = np.empty(len(y), dtype=int)
for k, (_, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)):
    own[te] = k
print(f"scikit-learn, its own StratifiedKFold(5, shuffle, seed 0): mean ROC AUC {cv(own).mean():.4f}")
