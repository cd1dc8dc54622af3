"""The decision of Touchpoint's `Decide`, re-implemented in Python for the issue-9 comparison.

Pure: no I/O besides reading the config and model files at start-up. `Policy.decide` takes the
stored profile hash, contacts and marks (as redis-py returns them) and the request, and returns
the same answer Touchpoint's `domain::decision::decide` gives for the example configuration:

- stage (the stored one when it is a configured stage, else the first), lapse;
- the feature vector of `src/domain/features.rs` (roles read off the journey transitions as
  `FeatureEvents::from_triggers` does), both logistic models scored at once with numpy
  (weights pre-divided by the scaling's std, as `BoundModel::bind` does);
- segments and offer eligibility: the config's CEL rules, implemented as Python predicates
  (`RULES`, keyed by the exact rule text; a rule not in the table stops the peer at start-up);
- the candidate checks in Touchpoint's order (channel, placement, validity window, contact
  limit, cooldowns, cap, eligibility), then the default priority
  (`scores.purchase * offer.value * offer.weight` with a purchase model, else
  `offer.priority * offer.weight`), ranked best first with ties on the offer id;
- the write's guard (what `domain::decision::guard` re-checks and records).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tomllib

import numpy as np
import orjson

MS_PER_DAY = 86_400_000
NEVER_DAYS = 365.0
FEATURE_NAMES = [
    "log_recency_days",
    "log_tenure_days",
    "log_events",
    "log_page_views",
    "log_product_views",
    "log_add_to_cart",
    "log_checkouts",
    "log_purchases",
    "log_monetary",
    "log_days_since_purchase",
    "has_purchased",
    "cart_abandoned",
    "log_reviews_referrals",
    "stage_rank",
    "lapsed",
]
EU = ("DE", "FR", "ES", "IT", "NL")


# The example config's CEL rules as Python predicates over (profile, context, scores, lapsed).
# `has(x.f)` is `"f" in x`; a type error (e.g. a string age) raises, which counts as "not in the
# segment" / "eligibility_error", as in Touchpoint.
RULES = {
    "has(profile.age) && profile.age >= 18.0 && profile.age < 30.0": lambda p, c, s, l: "age" in p
    and p["age"] >= 18.0
    and p["age"] < 30.0,
    "has(profile.income_band) && profile.income_band == 'high'": lambda p, c, s, l: "income_band" in p
    and p["income_band"] == "high",
    "profile.purchase_count >= 2.0": lambda p, c, s, l: p["purchase_count"] >= 2.0,
    "profile.cart_abandoned && has(profile.days_since_last_seen) && profile.days_since_last_seen <= 7.0": lambda p,
    c,
    s,
    l: p["cart_abandoned"] and "days_since_last_seen" in p and p["days_since_last_seen"] <= 7.0,
    "has(profile.days_since_last_seen) && profile.days_since_last_seen <= 14.0": lambda p, c, s, l: "days_since_last_seen"
    in p
    and p["days_since_last_seen"] <= 14.0,
    "has(profile.interests) && profile.interests.contains('electronics')": lambda p, c, s, l: "interests" in p
    and _contains(p["interests"], "electronics"),
    "has(profile.country) && profile.country in ['DE', 'FR', 'ES', 'IT', 'NL']": lambda p, c, s, l: "country" in p
    and p["country"] in EU,
    "profile.purchase_count == 0.0": lambda p, c, s, l: p["purchase_count"] == 0.0,
    "profile.cart_abandoned || (has(context.basket_value) && context.basket_value >= 50.0)": lambda p, c, s, l: p[
        "cart_abandoned"
    ]
    or ("basket_value" in c and c["basket_value"] >= 50.0),
    "lapsed || (has(scores.churn) && scores.churn > 0.6)": lambda p, c, s, l: l or ("churn" in s and s["churn"] > 0.6),
    "profile.monetary_total >= 200.0 || (has(profile.income_band) && profile.income_band == 'high')": lambda p,
    c,
    s,
    l: p["monetary_total"] >= 200.0 or ("income_band" in p and p["income_band"] == "high"),
}


def _contains(s, sub):
    if not isinstance(s, str):
        raise TypeError("contains on a non-string")
    return sub in s


def _rule(text, where):
    try:
        return RULES[text]
    except KeyError:
        raise SystemExit(f"peer: {where}: CEL rule {text!r} has no Python predicate in policy.RULES") from None


def _days_ms(days):
    return int(days * MS_PER_DAY)


def _parse_time(s):
    if not s:
        return None
    t = _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return int(t.timestamp() * 1000)


class Offer:
    __slots__ = (
        "id",
        "name",
        "stages",
        "channels",
        "placements",
        "content_ref",
        "priority",
        "value",
        "weight",
        "valid_from",
        "valid_until",
        "eligibility",
        "cap",
        "dismiss_ms",
        "accept_ms",
    )

    def __init__(self, o):
        self.id = o["id"]
        self.name = o.get("name", o["id"])
        self.stages = list(o.get("stages", []))
        self.channels = frozenset(o.get("channels", []))
        self.placements = frozenset(o.get("placements", []))
        self.content_ref = o.get("content_ref", "")
        self.priority = float(o.get("priority", 0.0))
        self.value = float(o.get("value", 0.0))
        self.weight = float(o.get("weight", 1.0))
        self.valid_from = _parse_time(o.get("valid_from"))
        self.valid_until = _parse_time(o.get("valid_until"))
        rule = o.get("eligibility", "")
        self.eligibility = _rule(rule, f"offer {self.id}") if rule else None
        cap = o.get("cap")
        self.cap = (int(cap["max"]), _days_ms(cap["days"])) if cap else None
        self.dismiss_ms = _days_ms(o.get("cooldown_after_dismiss_days", 0))
        self.accept_ms = _days_ms(o.get("cooldown_after_accept_days", 0))


class Models:
    """The churn and purchase logistic models, scored together: sigmoid(W @ x + c)."""

    def __init__(self, paths):
        self.names, weights, consts, self.versions = [], [], [], {}
        for name in ("churn", "purchase"):
            path = paths.get(name)
            if not path:
                continue
            a = json.load(open(path))
            if a["kind"] != "logistic_regression":
                raise SystemExit(f"peer: model {name}: only logistic_regression is implemented")
            idx = [FEATURE_NAMES.index(f) for f in a["feature_names"]]
            std = np.array([s if s > 0 else 1.0 for s in a["scaling"]["std"]])
            w = np.array(a["coefficients"]) / std
            full = np.zeros(len(FEATURE_NAMES))
            full[idx] = w
            weights.append(full)
            consts.append(a["intercept"] - float(w @ np.array(a["scaling"]["mean"])))
            self.names.append(name)
            self.versions[name] = a["version"]
        self.w = np.array(weights) if weights else None
        self.c = np.array(consts)

    def score(self, x):
        if self.w is None:
            return {}
        z = self.w @ np.asarray(x) + self.c
        p = 1.0 / (1.0 + np.exp(-z))
        return dict(zip(self.names, p.tolist()))


class Policy:
    def __init__(self, config_path, model_paths=None):
        raw = open(config_path, "rb").read()
        cfg = tomllib.loads(raw.decode())
        base = os.path.dirname(os.path.abspath(config_path))
        for unsupported in ("experiments", "holdout"):
            if cfg.get(unsupported):
                raise SystemExit(f"peer: [{unsupported}] is not implemented (the example config has none)")
        d = cfg.get("decisions", {})
        if d.get("priority"):
            raise SystemExit("peer: only the default priority is implemented")
        if d.get("exploration", {}).get("policy", "none") != "none":
            raise SystemExit("peer: only exploration policy none is implemented")
        self.config_version = hashlib.sha256(raw).hexdigest()[:16]
        self.channels = frozenset(d.get("channels", []))
        self.default_limit = int(d.get("default_limit", 3))
        j = cfg["journey"]
        self.stages = list(j["stages"])
        self.rank = {s: i for i, s in enumerate(self.stages)}
        self.lapse_ms = int(float(j.get("lapse_after_days", 30)) * MS_PER_DAY)
        self.purchase_event = j.get("purchase_event", "purchase")
        self.roles = self._roles(j.get("transitions", []))
        self.segments = [(s["id"], _rule(s["rule"], f"segment {s['id']}")) for s in cfg.get("segments", [])]
        self.contact_limits = {
            cp["channel"]: [(int(l["max"]), _days_ms(l["days"])) for l in cp.get("limits", [])]
            for cp in cfg.get("contact_policy", [])
        }
        self.offers = [Offer(o) for o in cfg.get("offers", [])]
        by_id = {o.id: o for o in self.offers}
        # Degraded answers: the channel's fallback without a stage, else the first stage's.
        self.fallbacks = {}
        for f in sorted(cfg.get("fallbacks", []), key=lambda f: "stage" in f):
            if f.get("stage", self.stages[0]) == self.stages[0] and f["channel"] not in self.fallbacks:
                self.fallbacks[f["channel"]] = [by_id[i] for i in f.get("offers", []) if i in by_id]
        self.by_stage = {s: [o for o in self.offers if s in o.stages] for s in self.stages}
        windows = [o.cap[1] for o in self.offers if o.cap] + [
            w for ls in self.contact_limits.values() for _, w in ls
        ]
        self.longest_window = max(windows, default=0)
        paths = dict(model_paths or {})
        for name, rel in (cfg.get("models") or {}).items():
            if name in ("churn", "purchase") and name not in paths:
                paths[name] = os.path.join(base, rel)
        self.models = Models(paths)

    def _roles(self, transitions):
        """`FeatureEvents::from_triggers`: which event types feed which role-named feature."""
        roles = {"page": [], "product": [], "cart": [], "checkout": [], "advocacy": []}
        n = len(self.stages)
        for t in transitions:
            if int(t.get("min_count", 1)) > 1 or t["event_type"] == self.purchase_event:
                continue
            to, e = self.rank[t["to"]], t["event_type"]
            if to == 0:
                role = "page"
            elif to == 1:
                role = "product"
            elif to == 2 and (not roles["cart"] or e in roles["cart"]):
                role = "cart"
            elif to == 2:
                role = "checkout"
            elif to + 1 == n and n >= 4:
                role = "advocacy"
            else:
                continue
            if e not in roles[role]:
                roles[role].append(e)
        return {k: tuple("c:" + e for e in v) for k, v in roles.items()}

    def decide(self, user_id, channel, placement, context, limit, fields, contacts, marks, now):
        """One decision from the stored hash fields, contacts (member, score) and marks.

        Returns (answer dict, guard: (limits, caps, offers to record) or None)."""
        get = fields.get
        stage = get("stage")
        if stage not in self.rank:
            stage = self.stages[0]
        ls, fs, lp = get("ls"), get("fs"), get("lp")
        ls = int(ls) if ls is not None else None
        fs = int(fs) if fs is not None else None
        lp = int(lp) if lp is not None else None
        pc = int(get("pc", 0))
        mon = float(get("mon", 0.0))
        counts, attrs, total = {}, {}, 0
        for k, v in fields.items():
            if k.startswith("c:"):
                n = int(v)
                counts[k] = n
                total += n
            elif k.startswith("a:"):
                attrs[k[2:]] = orjson.loads(v)
        roles = self.roles

        def count(role):
            return sum(counts.get(e, 0) for e in roles[role])

        carts = count("cart")
        cart_abandoned = carts > pc
        lapsed = ls is not None and self.lapse_ms > 0 and now - ls > self.lapse_ms

        def days(t):
            return max(now - t, 0) / MS_PER_DAY

        ln1p = np.log1p
        x = [
            days(ls) if ls is not None else NEVER_DAYS,
            days(fs) if fs is not None else 0.0,
            total,
            count("page"),
            count("product"),
            carts,
            count("checkout"),
            pc,
            max(mon, 0.0),
            days(lp) if lp is not None else NEVER_DAYS,
        ]
        x = ln1p(np.array(x, dtype=float)).tolist() + [
            1.0 if pc > 0 else 0.0,
            1.0 if cart_abandoned else 0.0,
            float(ln1p(count("advocacy"))),
            self.rank[stage] / (max(len(self.stages), 2) - 1),
            1.0 if lapsed else 0.0,
        ]
        scores = self.models.score(x)

        # The `profile` the rules read: attributes plus aggregates.
        profile = attrs
        profile["purchase_count"] = float(pc)
        profile["monetary_total"] = mon
        profile["cart_abandoned"] = cart_abandoned
        if ls is not None:
            profile["days_since_last_seen"] = days(ls)
        if fs is not None:
            profile["days_since_first_seen"] = days(fs)
        if lp is not None:
            profile["days_since_last_purchase"] = days(lp)
        segments = []
        for sid, rule in self.segments:
            try:
                if rule(profile, context, scores, lapsed) is True:
                    segments.append(sid)
            except (TypeError, KeyError):
                pass

        # Contacts: (decision, channel, offer, at) inside the longest window.
        parsed = []
        for member, at in contacts:
            d, ch, o = member.split("|", 2)
            parsed.append((d, ch, o, int(at)))
        channel_limit = None
        for mx, window in self.contact_limits.get(channel, ()):
            since = now - window
            if len({d for d, ch, _, at in parsed if ch == channel and at >= since}) >= mx:
                channel_limit = {"code": "contact_limit", "channel": channel, "max": mx, "window_ms": window}
                break
        purchase = scores.get("purchase")
        kept, dropped = [], []
        for o in self.by_stage[stage]:
            reason = None
            if channel not in o.channels:
                reason = "wrong_channel"
            elif placement and o.placements and placement not in o.placements:
                reason = "wrong_placement"
            elif (o.valid_from is not None and now < o.valid_from) or (
                o.valid_until is not None and now >= o.valid_until
            ):
                reason = "outside_window"
            elif channel_limit is not None:
                reason = "contact_limit"
            elif o.dismiss_ms > 0 and now < int(marks.get("dismiss:" + o.id, -(1 << 62))) + o.dismiss_ms:
                reason = "cooldown_after_dismiss"
            elif o.accept_ms > 0 and now < int(marks.get("accept:" + o.id, -(1 << 62))) + o.accept_ms:
                reason = "cooldown_after_accept"
            elif o.cap is not None and sum(1 for _, _, oid, at in parsed if oid == o.id and at >= now - o.cap[1]) >= o.cap[0]:
                reason = "capped"
            elif o.eligibility is not None:
                try:
                    if o.eligibility(profile, context, scores, lapsed) is not True:
                        reason = "ineligible"
                except (TypeError, KeyError):
                    reason = "eligibility_error"
            if reason is None:
                score = (purchase * o.value if purchase is not None else o.priority) * o.weight
                kept.append((-score, o.id, o, score))
            else:
                dropped.append({"offer_id": o.id, "score": 0.0, "dropped": reason})
        kept.sort(key=lambda k: (k[0], k[1]))
        chosen = kept[:limit]
        candidates = [{"offer_id": k[1], "score": k[3]} for k in chosen]
        candidates += [{"offer_id": k[1], "score": k[3], "dropped": "below_limit"} for k in kept[limit:]]
        candidates += dropped
        suppression = None
        if not chosen:
            suppression = channel_limit or {"code": "no_eligible_offer"}

        # What the write re-checks and records (`domain::decision::guard`): the channel's limits
        # and the chosen offers' caps; recorded are every chosen offer when the channel has a
        # contact limit, else the capped ones. None when nothing is recorded.
        guard = None
        if chosen and self.longest_window > 0:
            limited = channel in self.contact_limits
            recorded = [k[1] for k in chosen if limited or k[2].cap is not None]
            if recorded:
                limits = [(mx, now - w) for mx, w in self.contact_limits.get(channel, ())]
                caps = [(k[1], k[2].cap[0], now - k[2].cap[1]) for k in chosen if k[2].cap is not None]
                guard = (limits, caps, recorded)
        answer = {
            "user_id": user_id,
            "at": now,
            "channel": channel,
            "placement": placement,
            "limit": limit,
            "stage": stage,
            "lapsed": lapsed,
            "segments": segments,
            "config_version": self.config_version,
            "model_versions": self.models.versions,
            "features": dict(zip(FEATURE_NAMES, x)),
            "scores": scores,
            "chosen": [{"offer_id": k[1], "score": k[3], "selection_probability": 1.0} for k in chosen],
            "candidates": candidates,
            "suppression": suppression,
            "read": {k: v for k, v in profile.items()},
            "offers": [k[2] for k in chosen],
        }
        return answer, guard
