"""Reference values for src/domain/stats.rs, computed with scipy; writes stats.json beside it.

Formulas (the same as the Rust code):
- two-proportion z-test: pooled SE for the test, two-sided p = 2 * (1 - Phi(|z|));
  relative lift (p_t / p_c - 1) with a 95% CI from the delta method on log(p_t / p_c):
  exp(log(p_t/p_c) +- 1.959963984540054 * sqrt((1-p_t)/(n_t p_t) + (1-p_c)/(n_c p_c))) - 1.
- Welch's t-test on per-user revenue (scipy.stats.ttest_ind_from_stats, equal_var=False);
  relative lift of the mean with a 95% CI: (diff +- t_{0.975, df} * SE) / mean_c.
- sample-ratio mismatch: scipy.stats.chisquare(observed, expected from the weights).
Run: python3 tests/vectors/stats_vectors.py
"""
import json, math, os
from scipy import stats

Z = stats.norm.ppf(0.975)
out = {"z975": Z, "proportions": [], "welch": [], "srm": []}

for (xc, nc, xt, nt) in [(267, 21306, 378, 21387), (2262, 21306, 3894, 21307), (10, 1000, 25, 1000), (500, 5000, 480, 5000), (1, 200, 7, 210)]:
    pc, pt = xc / nc, xt / nt
    p = (xc + xt) / (nc + nt)
    se = math.sqrt(p * (1 - p) * (1 / nc + 1 / nt))
    z = (pt - pc) / se
    pval = 2 * stats.norm.sf(abs(z))
    lr = math.log(pt / pc)
    sel = math.sqrt((1 - pt) / (nt * pt) + (1 - pc) / (nc * pc))
    out["proportions"].append({"control": [xc, nc], "treatment": [xt, nt], "z": z, "p_value": pval,
                               "lift": pt / pc - 1, "ci": [math.exp(lr - Z * sel) - 1, math.exp(lr + Z * sel) - 1]})

for (mc, vc, nc, mt, vt, nt) in [(0.652, 15.4, 21306, 1.423, 35.1, 21307), (0.652, 15.4, 21306, 1.077, 29.8, 21387), (10.0, 4.0, 30, 11.5, 9.0, 25), (3.0, 1.0, 1000, 3.01, 1.1, 1200)]:
    r = stats.ttest_ind_from_stats(mt, math.sqrt(vt), nt, mc, math.sqrt(vc), nc, equal_var=False)
    a, b = vt / nt, vc / nc
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (nt - 1) + b * b / (nc - 1))
    tq = stats.t.ppf(0.975, df)
    d = mt - mc
    out["welch"].append({"control": [mc, vc, nc], "treatment": [mt, vt, nt], "t": float(r.statistic), "p_value": float(r.pvalue),
                         "df": df, "lift": d / mc, "ci": [(d - tq * se) / mc, (d + tq * se) / mc]})

for (obs, w) in [([21306, 21307, 21387], [1, 1, 1]), ([5000, 5300], [1, 1]), ([1000, 2100, 980], [1, 2, 1]), ([333, 333, 334], [1, 1, 1])]:
    tot = sum(obs)
    exp = [tot * x / sum(w) for x in w]
    r = stats.chisquare(obs, exp)
    out["srm"].append({"observed": obs, "weights": w, "chi2": float(r.statistic), "p_value": float(r.pvalue)})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stats.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print(f"wrote {path}")
