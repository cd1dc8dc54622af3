"""Checks for the comparison, with real gRPC clients.

    python check.py compare TOUCHPOINT_ADDR PEER_ADDR [--pairs N]
        Seeded pairs cmp<i>-tp / cmp<i>-py hold identical histories and attributes: each step
        asks Touchpoint for the -tp user and the peer for the -py user, with explanations, and
        compares stage, lapse, segments, offers (ids, ranks, names, content), scores (to 1e-6
        relative: `now` differs by the time between the calls), suppression codes, model
        versions and every candidate's kept/dropped code. The steps repeat channels so caps
        and the e-mail contact limit come into play. Exits 1 on any difference.

    python check.py probe ADDR [--calls N] [--user bench-user]
        N Decide calls (64 in flight); prints how many were not OK and how many degraded.
        Exits 1 if any was not OK (degraded answers are reported).
"""

import sys
import time

import grpc

import protos

dpb, dpb_grpc, _, _, cpb = protos.load()

STEPS = [
    ("web", "", {}),
    ("email", "", {}),
    ("app", "", {}),
    ("email", "", {}),
    ("web", "home_banner", {}),
    ("web", "", {"basket_value": 80.0}),
    ("email", "", {}),
    ("app", "", {}),
    ("web", "", {}),
    ("web", "", {}),
]


def close(a, b):
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def summary(r):
    return {
        "stage": r.stage,
        "lapsed": r.lapsed,
        "segments": list(r.segments),
        "offers": [(o.offer_id, o.rank, o.channel, o.name, o.content_ref) for o in r.offers],
        "suppression_code": r.suppression_code,
        "model_versions": dict(r.model_versions),
        "degraded": r.degraded,
        "candidates": {c.offer_id: (c.kept, c.reason_code) for c in r.explanation},
    }


def numbers(r):
    out = [o.score for o in r.offers]
    for c in sorted(r.explanation, key=lambda c: c.offer_id):
        out.append(c.score)
        out.extend(v for _, v in sorted(c.scores.items()))
    return out


def request(user, channel, placement, context):
    ctx = {k: cpb.Value(number_value=v) for k, v in context.items()}
    return dpb.DecideRequest(user_id=user, channel=channel, placement=placement, context=ctx, explain=True)


def compare(tp_addr, py_addr, pairs):
    tp = dpb_grpc.DecisionsStub(grpc.insecure_channel(tp_addr))
    py = dpb_grpc.DecisionsStub(grpc.insecure_channel(py_addr))
    diffs, calls, offers, stages = 0, 0, 0, set()
    for i in range(pairs):
        for step, (channel, placement, context) in enumerate(STEPS):
            a = tp.Decide(request(f"cmp{i}-tp", channel, placement, context), timeout=5)
            b = py.Decide(request(f"cmp{i}-py", channel, placement, context), timeout=5)
            calls += 1
            sa, sb = summary(a), summary(b)
            na, nb = numbers(a), numbers(b)
            stages.add(sa["stage"])
            offers += len(sa["offers"])
            bad = [k for k in sa if sa[k] != sb[k]]
            if len(na) != len(nb) or not all(close(x, y) for x, y in zip(na, nb)):
                bad.append("scores")
            if bad:
                diffs += 1
                print(f"DIFF cmp{i} step {step} ({channel}): {bad}")
                for k in bad:
                    print(f"  touchpoint {k}: {sa.get(k, na)}\n  peer       {k}: {sb.get(k, nb)}")
    print(f"compare: {calls} decisions per server over {pairs} user pairs, {offers} offers, "
          f"stages {sorted(stages)}: {diffs} differ")
    # Concurrent e-mail decisions for one new user: the contact limit (1 per 3 days) must let
    # exactly one through on each server (the write re-checks it atomically).
    tag = time.time_ns()
    for name, stub in (("touchpoint", tp), ("peer", py)):
        req = dpb.DecideRequest(user_id=f"race-{name}-{tag}", channel="email")
        answers = [f.result() for f in [stub.Decide.future(req, timeout=5) for _ in range(16)]]
        served = sum(1 for a in answers if a.offers)
        limited = sum(1 for a in answers if a.suppression_code == "contact_limit")
        print(f"race: 16 concurrent e-mail decisions for one user on {name}: {served} with offers, {limited} contact_limit")
        if served != 1 or limited != 15:
            diffs += 1
    return 1 if diffs else 0


def probe(addr, calls, user):
    stub = dpb_grpc.DecisionsStub(grpc.insecure_channel(addr))
    req = dpb.DecideRequest(user_id=user, channel="web")
    not_ok, degraded, done = 0, 0, 0
    while done < calls:
        futures = [stub.Decide.future(req, timeout=5) for _ in range(min(64, calls - done))]
        for f in futures:
            try:
                degraded += f.result().degraded
            except grpc.RpcError:
                not_ok += 1
        done += len(futures)
    print(f"probe {addr}: {calls} calls, {not_ok} not OK, {degraded} degraded")
    return 1 if not_ok else 0


def opt(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], opt("--pairs", 20)))
    sys.exit(probe(sys.argv[2], opt("--calls", 1000), opt("--user", "bench-user")))
