"""Reference values for src/domain/stats.rs, computed with scipy; writes stats.json beside it.

Formulas (the same as the Rust code):
- two-proportion z-test: pooled SE for the test, two-sided p = 2 * sf(|z|) (the normal survival
  function: 1 - Phi underflows to 0 beyond |z| of about 8, sf does not);
  relative lift (p_t / p_c - 1) with a 95% CI from the delta method on log(p_t / p_c):
  exp(log(p_t/p_c) +- 1.959963984540054 * sqrt((1-p_t)/(n_t p_t) + (1-p_c)/(n_c p_c))) - 1.
- Welch's t-test on per-user revenue (scipy.stats.ttest_ind_from_stats, equal_var=False);
  relative lift of the mean with a 95% CI: (diff +- t_{0.975, df} * SE) / mean_c.
- sample-ratio mismatch: scipy.stats.chisquare(observed, expected from the weights).
- normal_tail: the two-sided normal p-value 2 * sf(|z|) alone, out to |z| = 40 (0 once the
  value is below the smallest double, from |z| of about 38).
Far-tail cases (tiny p-values) are included in every section; the Rust tests compare p-values
with a relative tolerance so that they check these too.
Run: python3 tests/vectors/stats_vectors.py  (needs scipy)
"""
import json, math, os
from scipy import stats

Z = stats.norm.ppf(0.975)
out = {"z975": Z, "proportions": [], "welch": [], "srm": [], "normal_tail": []}

for z in [0.5, 1.959963984540054, 8, 10, 15, 20, 22.48604082719282, 25, 30, 35, 37, 38, 40, -12.5]:
    out["normal_tail"].append({"z": z, "p_value": float(2 * stats.norm.sf(abs(z)))})

for (xc, nc, xt, nt) in [(267, 21306, 378, 21387), (2262, 21306, 3894, 21307), (10, 1000, 25, 1000), (500, 5000, 480, 5000), (1, 200, 7, 210),
                           # far tails: |z| from 8 to over 100 (p from 1e-17 down to 0)
                           (1000, 20000, 1400, 20000), (10000, 100000, 11500, 100000), (10000, 100000, 12000, 100000),
                           (5000, 100000, 8000, 100000), (5000, 100000, 3000, 100000), (20000, 200000, 30000, 200000),
                           (10000, 200000, 30000, 200000)]:
    pc, pt = xc / nc, xt / nt
    p = (xc + xt) / (nc + nt)
    se = math.sqrt(p * (1 - p) * (1 / nc + 1 / nt))
    z = (pt - pc) / se
    pval = float(2 * stats.norm.sf(abs(z)))
    lr = math.log(pt / pc)
    sel = math.sqrt((1 - pt) / (nt * pt) + (1 - pc) / (nc * pc))
    out["proportions"].append({"control": [xc, nc], "treatment": [xt, nt], "z": z, "p_value": pval,
                               "lift": pt / pc - 1, "ci": [math.exp(lr - Z * sel) - 1, math.exp(lr + Z * sel) - 1]})

for (mc, vc, nc, mt, vt, nt) in [(0.652, 15.4, 21306, 1.423, 35.1, 21307), (0.652, 15.4, 21306, 1.077, 29.8, 21387), (10.0, 4.0, 30, 11.5, 9.0, 25), (3.0, 1.0, 1000, 3.01, 1.1, 1200),
                                 # far tails: large t with few and with many degrees of freedom
                                 (1.0, 1.0, 1000, 2.0, 1.0, 1000), (10.0, 1.0, 10, 20.0, 1.0, 10),
                                 (1.0, 4.0, 20000, 1.3, 4.0, 20000), (1.0, 1.0, 5000, 1.7, 1.0, 5000),
                                 (5.0, 1.0, 3, 9.0, 1.0, 3)]:
    r = stats.ttest_ind_from_stats(mt, math.sqrt(vt), nt, mc, math.sqrt(vc), nc, equal_var=False)
    a, b = vt / nt, vc / nc
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (nt - 1) + b * b / (nc - 1))
    tq = stats.t.ppf(0.975, df)
    d = mt - mc
    out["welch"].append({"control": [mc, vc, nc], "treatment": [mt, vt, nt], "t": float(r.statistic), "p_value": float(r.pvalue),
                         "df": df, "lift": d / mc, "ci": [(d - tq * se) / mc, (d + tq * se) / mc]})

for (obs, w) in [([21306, 21307, 21387], [1, 1, 1]), ([5000, 5300], [1, 1]), ([1000, 2100, 980], [1, 2, 1]), ([333, 333, 334], [1, 1, 1]),
                 # far tails
                 ([5000, 7000], [1, 1]), ([30000, 34000], [1, 1]), ([10000, 14000], [1, 1]), ([1000, 2000, 3000], [1, 1, 1]),
                 ([100, 300], [1, 3])]:
    tot = sum(obs)
    exp = [tot * x / sum(w) for x in w]
    r = stats.chisquare(obs, exp)
    out["srm"].append({"observed": obs, "weights": w, "chi2": float(r.statistic), "p_value": float(r.pvalue)})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stats.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print(f"wrote {path}")
