"""Seeds users for the comparison: journey events as a JSON Lines file for
`touchpoint client events --file`, and profile attributes through Touchpoint's Profiles/PutProfile.

    python seed.py events OUT.jsonl --users N      # writes the events (deterministic, seed 9)
    python seed.py attributes ADDR --users N       # sets the attributes over gRPC

Users: `bench-user` (the one h2load asks for: consideration stage, country DE, interests
electronics, so the eligibility rules and segments run), `u<i>` for i < N (random histories over
every stage, some lapsed, some purchasers), and pairs `cmp<i>-tp` / `cmp<i>-py` with identical
histories and attributes, for check.py (one of each pair is asked of Touchpoint, the other of
the peer, so the contacts one server records cannot change what the other answers).
"""

import json
import random
import sys
import time

DAY = 86_400_000
TYPES = ["page_view", "product_view", "add_to_cart", "checkout_started", "purchase", "review_posted", "referral"]
COUNTRIES = ["DE", "FR", "US", "GB", "IT", "NL", "ES", "PL"]
INTERESTS = ["electronics", "books", "garden", "fashion,electronics", "sports"]


def history(rng, now):
    """Events of one user: a walk down the funnel that stops somewhere, at a random recency."""
    depth = rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6])
    last = now - int(rng.uniform(0, 60) * DAY)
    t = last - int(rng.uniform(0, 90) * DAY)
    out = []
    for step in range(depth + 1):
        kind = TYPES[step]
        for _ in range(rng.randint(1, 3) if kind in ("page_view", "product_view", "add_to_cart") else 1):
            out.append((kind, t, round(rng.uniform(5, 150), 2) if kind == "purchase" else 0.0))
            t += int(rng.uniform(0, (last - t) / 3 if last > t else 0))
    if rng.random() < 0.3 and depth >= 4:  # repeat buyers
        for _ in range(rng.randint(1, 5)):
            out.append(("purchase", t, round(rng.uniform(5, 150), 2)))
    if rng.random() < 0.3:  # a cart left behind
        out.append(("add_to_cart", last, 0.0))
    return out


def attributes(rng):
    a = {}
    if rng.random() < 0.7:
        a["country"] = rng.choice(COUNTRIES)
    if rng.random() < 0.6:
        a["age"] = float(rng.randint(16, 70))
    if rng.random() < 0.5:
        a["interests"] = rng.choice(INTERESTS)
    if rng.random() < 0.3:
        a["income_band"] = rng.choice(["low", "mid", "high"])
    return a


def users(n, now):
    """(user id, events, attributes) of every seeded user."""
    rng = random.Random(9)
    out = [
        (
            "bench-user",
            [("page_view", now - DAY, 0.0), ("product_view", now - DAY // 2, 0.0)],
            {"country": "DE", "interests": "electronics,books", "age": 25.0},
        )
    ]
    for i in range(n):
        out.append((f"u{i}", history(rng, now), attributes(rng)))
    for i in range(max(n // 10, 20)):
        h, a = history(rng, now), attributes(rng)
        out.append((f"cmp{i}-tp", h, a))
        out.append((f"cmp{i}-py", h, a))
    return out


def main():
    mode, target = sys.argv[1], sys.argv[2]
    n = int(sys.argv[sys.argv.index("--users") + 1]) if "--users" in sys.argv else 1000
    now = int(time.time() * 1000) // DAY * DAY  # stable within a day: both steps see the same users
    if mode == "events":
        with open(target, "w") as f:
            for uid, events, _ in users(n, now):
                for k, (kind, t, value) in enumerate(events):
                    e = {"event_id": f"{uid}-{k}", "user_id": uid, "event_type": kind, "timestamp": t, "value": value}
                    f.write(json.dumps(e) + "\n")
        return
    import grpc

    import protos

    _, _, ppb, ppb_grpc, cpb = protos.load()
    stub = ppb_grpc.ProfilesStub(grpc.insecure_channel(target))

    def value(v):
        return cpb.Value(string_value=v) if isinstance(v, str) else cpb.Value(number_value=v)

    futures = []
    for uid, _, attrs in users(n, now):
        if attrs:
            req = ppb.PutProfileRequest(user_id=uid, attributes={k: value(v) for k, v in attrs.items()})
            futures.append(stub.PutProfile.future(req))
        if len(futures) >= 256:
            [f.result() for f in futures]
            futures = []
    [f.result() for f in futures]


if __name__ == "__main__":
    main()
