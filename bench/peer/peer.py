"""A Python grpcio + redis-py + numpy peer of Touchpoint's `Decide` (issue 9's comparison).

Serves touchpoint.v1.Decisions/Decide and grpc.health.v1.Health/Check over the same Redis data
Touchpoint stores. Per call: one pipelined read (profile hash, contacts in the longest window,
dismiss/accept marks), the decision of `policy.py`, one write (a Lua script, WRITE_LUA: the
atomic re-check of caps and contact limits, the contacts, the decision-log XADD, the user's
recent decisions; decided again on fresh data if a concurrent decision used the last contact).
See README.md for what is simplified.

    python peer.py --config CONFIG --redis redis://127.0.0.1:6379 --listen 127.0.0.1:50061 \
        [--server aio-blocking|aio|sync] [--workers N] [--churn PATH --purchase PATH] [--pidfile FILE]

--workers N starts N server processes sharing the port (SO_REUSEPORT): one Python process uses
one core at most (the GIL), so a fair peer runs one per core, as a production deployment would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402
import redis.asyncio as aredis  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402

import policy as pol  # noqa: E402
import protos  # noqa: E402

dpb, dpb_grpc, _ppb, _ppb_grpc, cpb = protos.load()

MAX_ID_BYTES = 128
MAX_LIMIT = 50
DECISION_MEMORY_MS = 30 * pol.MS_PER_DAY
RECENT_DECISIONS = 64
DECISION_LOG_MAXLEN = 1_000_000
DEADLINE_S = 0.050


# The write, one round trip: re-checks the channel's contact limits and the chosen offers' caps
# against the stored contacts atomically with recording the new ones (as Touchpoint's
# decision.lua does, so concurrent decisions for one user cannot exceed a limit), then appends
# the decision-log entry and the user's recent decision.
# KEYS: 1 contacts, 2 decision log, 3 recent decisions list.
# ARGV: 1 decision id, 2 now, 3 channel, 4 keep contacts since, 5 contacts ttl ms, 6 record JSON,
#       7 recent entry, 8 log maxlen, 9 recent kept, 10 recent ttl ms,
#       11 nlimits, (max, since)..., ncaps, (offer, max, since)..., noffers, offer...
# Returns 1 when written, 0 when a limit no longer holds (nothing written).
WRITE_LUA = """
local i = 11
local limits, caps, offers = {}, {}, {}
for k = 1, tonumber(ARGV[i]) do limits[k] = {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])}; i = i + 2 end
i = i + 1
for k = 1, tonumber(ARGV[i]) do caps[k] = {ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])}; i = i + 3 end
i = i + 1
for k = 1, tonumber(ARGV[i]) do offers[k] = ARGV[i + k] end
if #limits > 0 or #caps > 0 then
  local since = math.huge
  for _, l in ipairs(limits) do since = math.min(since, l[2]) end
  for _, c in ipairs(caps) do since = math.min(since, c[3]) end
  local m = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES')
  for _, l in ipairs(limits) do
    local seen, n = {}, 0
    for j = 1, #m, 2 do
      local d, ch = string.match(m[j], '^([^|]*)|([^|]*)|')
      if ch == ARGV[3] and tonumber(m[j + 1]) >= l[2] and not seen[d] then seen[d] = true; n = n + 1 end
    end
    if n >= l[1] then return 0 end
  end
  for _, c in ipairs(caps) do
    local n = 0
    for j = 1, #m, 2 do
      local o = string.match(m[j], '^[^|]*|[^|]*|(.*)$')
      if o == c[1] and tonumber(m[j + 1]) >= c[3] then n = n + 1 end
    end
    if n >= c[2] then return 0 end
  end
end
if #offers > 0 then
  for _, o in ipairs(offers) do redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1] .. '|' .. ARGV[3] .. '|' .. o) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'kind', 'decision', 'id', ARGV[1], 'json', ARGV[6])
redis.call('LPUSH', KEYS[3], ARGV[7])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[9]) - 1)
redis.call('PEXPIRE', KEYS[3], ARGV[10])
return 1
"""
ATTEMPTS = 3


class Keys:
    """Touchpoint's key layout (src/store/redis/keys.rs), plus the peer's own log keys."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.dlog = f"{prefix}:peer:dlog"

    def tag(self, user):
        if "{" in user or "}" in user or user.startswith("#"):
            return "#" + user.encode().hex()
        return user

    def user(self, user):
        t = f"{self.prefix}:{{{self.tag(user)}}}:"
        return t + "p", t + "c", t + "o", t + "peer:d"


def uuid7(now_ms):
    r = bytearray(os.urandom(10))
    r[0] = (r[0] & 0x0F) | 0x70
    r[2] = (r[2] & 0x3F) | 0x80
    h = (now_ms & 0xFFFFFFFFFFFF).to_bytes(6, "big").hex() + bytes(r).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def days_text(ms):
    d = ms / pol.MS_PER_DAY
    return f"{d:.0f}" if d == int(d) else f"{d:.2f}"


def suppression_text(s):
    if s is None:
        return "", ""
    if s["code"] == "contact_limit":
        return f"contact limit: at most {s['max']} {s['channel']} contact(s) per {days_text(s['window_ms'])} day(s)", s["code"]
    return "no eligible offer", s["code"]


# Per-process answer counters (h2load counts HTTP 200 whatever the grpc-status); written as JSON
# to <--stats-dir>/<pid>.json on SIGUSR1.
STATS = {"ok": 0, "degraded": 0, "invalid": 0, "error": 0}


def dump_stats(directory):
    if directory:
        with open(os.path.join(directory, f"{os.getpid()}.json"), "w") as f:
            json.dump(STATS, f)


class Invalid(Exception):
    pass


class Decider:
    """What both server flavours share: validation, the decision, the write's commands."""

    def __init__(self, policy, keys):
        self.policy, self.keys = policy, keys

    def query(self, req):
        uid = req.user_id
        if not uid or len(uid.encode()) > MAX_ID_BYTES:
            raise Invalid("user_id: is required, at most 128 bytes")
        if req.channel not in self.policy.channels:
            raise Invalid(f"channel: {req.channel!r} is not a configured channel")
        if len(req.placement.encode()) > MAX_ID_BYTES:
            raise Invalid("placement: at most 128 bytes")
        if req.limit > MAX_LIMIT:
            raise Invalid(f"limit: is {req.limit}, at most {MAX_LIMIT} allowed")
        context = {}
        for k, v in req.context.items():
            kind = v.WhichOneof("kind")
            context[k] = getattr(v, kind) if kind else None
        return uid, req.channel, req.placement, context, req.limit or self.policy.default_limit, req.explain

    def read(self, pipe, uid, now):
        p, c, o, _ = self.keys.user(uid)
        pipe.hgetall(p)
        if self.policy.longest_window > 0:
            pipe.zrangebyscore(c, now - self.policy.longest_window, "+inf", withscores=True)
            pipe.hgetall(o)

    def decide(self, q, replies, now):
        uid, channel, placement, context, limit, _ = q
        fields = replies[0]
        contacts, marks = (replies[1], replies[2]) if len(replies) == 3 else ([], {})
        return self.policy.decide(uid, channel, placement, context, limit, fields, contacts, marks, now)

    def write_args(self, answer, guard, now):
        """KEYS and ARGV of WRITE_LUA for a decision."""
        uid = answer["user_id"]
        did = answer["decision_id"]
        _, c, _, d = self.keys.user(uid)
        offers = answer.pop("offers")
        keep_since = now - self.policy.longest_window
        args = [
            did,
            now,
            answer["channel"],
            keep_since,
            max(DECISION_MEMORY_MS, now - keep_since + pol.MS_PER_DAY),
            orjson.dumps(answer),
            did + " ," + "".join(o.id + "," for o in offers) + "|",
            DECISION_LOG_MAXLEN,
            RECENT_DECISIONS,
            DECISION_MEMORY_MS,
        ]
        limits, caps, recorded = guard or ((), (), ())
        args.append(len(limits))
        for mx, since in limits:
            args += [mx, since]
        args.append(len(caps))
        for offer, mx, since in caps:
            args += [offer, mx, since]
        args.append(len(recorded))
        args += recorded
        return [c, self.keys.dlog, d], args, offers

    def response(self, answer, offers, explain):
        reason, code = suppression_text(answer["suppression"])
        channel = answer["channel"]
        explanation = []
        if explain:
            scores = answer["scores"]
            explanation = [
                dpb.CandidateExplanation(
                    offer_id=c["offer_id"],
                    kept="dropped" not in c,
                    reason_code=c.get("dropped", ""),
                    score=c["score"],
                    scores=scores,
                )
                for c in answer["candidates"]
            ]
        return dpb.DecideResponse(
            decision_id=answer["decision_id"],
            user_id=answer["user_id"],
            stage=answer["stage"],
            offers=[
                dpb.OfferResult(
                    offer_id=o.id,
                    content_ref=o.content_ref,
                    channel=channel,
                    score=c["score"],
                    selection_probability=1.0,
                    rank=i + 1,
                    name=o.name,
                )
                for i, (o, c) in enumerate(zip(offers, answer["chosen"]))
            ],
            lapsed=answer["lapsed"],
            segments=answer["segments"],
            model_versions=answer["model_versions"],
            config_version=answer["config_version"],
            suppression_reason=reason,
            suppression_code=code,
            explanation=explanation,
        )

    def fallback(self, q, reason):
        uid, channel, placement, _, limit, _ = q
        offers = []
        for f in self.policy.fallbacks.get(channel, []):
            offers.append(f)
        offers = offers[:limit]
        return dpb.DecideResponse(
            decision_id=uuid7(int(time.time() * 1000)),
            user_id=uid,
            offers=[
                dpb.OfferResult(
                    offer_id=o.id, content_ref=o.content_ref, channel=channel, score=o.priority, selection_probability=1.0, rank=i + 1, name=o.name
                )
                for i, o in enumerate(offers)
            ],
            degraded=True,
            degraded_reason=reason,
            config_version=self.policy.config_version,
            suppression_reason="" if offers else "degraded: no fallback offer for this channel",
            suppression_code="" if offers else "no_fallback_offer",
        )


class AioDecisions(dpb_grpc.DecisionsServicer):
    """grpc.aio + redis.asyncio: one event loop per process, many calls in flight."""

    def __init__(self, decider, url):
        self.d = decider
        self.r = aredis.Redis.from_url(url, decode_responses=True, max_connections=64)
        self.write = self.r.register_script(WRITE_LUA)

    async def Decide(self, request, context):
        d = self.d
        try:
            q = d.query(request)
        except Invalid as e:
            STATS["invalid"] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        try:
            async with asyncio.timeout(DEADLINE_S):
                for _ in range(ATTEMPTS):
                    now = int(time.time() * 1000)
                    pipe = self.r.pipeline(transaction=False)
                    d.read(pipe, q[0], now)
                    replies = await pipe.execute()
                    answer, guard = d.decide(q, replies, now)
                    answer["decision_id"] = uuid7(now)
                    keys, args, offers = d.write_args(answer, guard, now)
                    if await self.write(keys=keys, args=args):
                        break
                else:
                    await context.abort(grpc.StatusCode.ABORTED, "too many concurrent decisions for this user")
        except TimeoutError:
            STATS["degraded"] += 1
            return d.fallback(q, "store_timeout")
        except (redis.ConnectionError, redis.TimeoutError):
            STATS["degraded"] += 1
            return d.fallback(q, "store_unavailable")
        except Exception:
            STATS["error"] += 1
            raise
        STATS["ok"] += 1
        return d.response(answer, offers, q[5])


class Contention(Exception):
    pass


class SyncDecisions(dpb_grpc.DecisionsServicer):
    """The thread-pool grpc server + redis-py's blocking client (a connection pool)."""

    def __init__(self, decider, url):
        self.d = decider
        self.r = redis.Redis.from_url(url, decode_responses=True, max_connections=64, socket_timeout=DEADLINE_S)
        self.write = self.r.register_script(WRITE_LUA)

    def answer(self, q):
        """The decision with blocking Redis calls: the response, or raises Contention."""
        d = self.d
        try:
            for _ in range(ATTEMPTS):
                now = int(time.time() * 1000)
                pipe = self.r.pipeline(transaction=False)
                d.read(pipe, q[0], now)
                replies = pipe.execute()
                answer, guard = d.decide(q, replies, now)
                answer["decision_id"] = uuid7(now)
                keys, args, offers = d.write_args(answer, guard, now)
                if self.write(keys=keys, args=args):
                    break
            else:
                raise Contention()
        except redis.TimeoutError:
            STATS["degraded"] += 1
            return d.fallback(q, "store_timeout")
        except redis.ConnectionError:
            STATS["degraded"] += 1
            return d.fallback(q, "store_unavailable")
        except Exception:
            STATS["error"] += 1
            raise
        STATS["ok"] += 1
        return d.response(answer, offers, q[5])

    def Decide(self, request, context):
        try:
            return self.answer(self.d.query(request))
        except Invalid as e:
            STATS["invalid"] += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Contention:
            context.abort(grpc.StatusCode.ABORTED, "too many concurrent decisions for this user")


class AioBlockingDecisions(SyncDecisions):
    """grpc.aio with redis-py's blocking client called on the event loop: no coroutine switch
    per Redis reply (the loop waits for two local round trips per call)."""

    async def Decide(self, request, context):
        try:
            return self.answer(self.d.query(request))
        except Invalid as e:
            STATS["invalid"] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Contention:
            await context.abort(grpc.StatusCode.ABORTED, "too many concurrent decisions for this user")


OPTIONS = [("grpc.so_reuseport", 1), ("grpc.max_concurrent_streams", 256)]


def make_decider(args):
    p = pol.Policy(args.config, {k: v for k, v in (("churn", args.churn), ("purchase", args.purchase)) if v})
    return Decider(p, Keys(args.prefix))


async def serve_aio(args):
    server = grpc.aio.server(options=OPTIONS)
    flavour = AioBlockingDecisions if args.server == "aio-blocking" else AioDecisions
    dpb_grpc.add_DecisionsServicer_to_server(flavour(make_decider(args), args.redis), server)
    hs = health.aio.HealthServicer()
    await hs.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    server.add_insecure_port(args.listen)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump_stats, args.stats_dir)
    await stop.wait()
    await server.stop(0.5)


def serve_sync(args):
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads), options=OPTIONS)
    dpb_grpc.add_DecisionsServicer_to_server(SyncDecisions(make_decider(args), args.redis), server)
    hs = health.HealthServicer()
    hs.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    server.add_insecure_port(args.listen)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0.5))
    signal.signal(signal.SIGUSR1, lambda *_: dump_stats(args.stats_dir))
    server.wait_for_termination()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument("--prefix", default="tp")
    ap.add_argument("--listen", default="127.0.0.1:50061")
    ap.add_argument("--server", choices=["aio", "aio-blocking", "sync"], default="aio-blocking")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop", help="aio server: event loop")
    ap.add_argument("--threads", type=int, default=16, help="sync server: handler threads")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--churn")
    ap.add_argument("--purchase")
    ap.add_argument("--pidfile", help="write the pids of every serving process here")
    ap.add_argument("--stats-dir", help="on SIGUSR1, write answer counters to DIR/<pid>.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    make_decider(args)  # fail fast on a config the peer cannot serve
    if args.workers <= 1 or args.worker:
        if args.pidfile and not args.worker:
            open(args.pidfile, "w").write(f"{os.getpid()}\n")
        if args.server != "sync":
            if args.loop == "uvloop":
                import uvloop

                uvloop.run(serve_aio(args))
            else:
                asyncio.run(serve_aio(args))
        else:
            serve_sync(args)
        return
    # Several processes on one port (SO_REUSEPORT); started fresh (no fork after grpc is loaded).
    argv = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--worker"]
    children = [subprocess.Popen(argv) for _ in range(args.workers)]
    if args.pidfile:
        open(args.pidfile, "w").write("".join(f"{c.pid}\n" for c in [*children]) + f"{os.getpid()}\n")

    def stop(*_):
        for c in children:
            c.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    for c in children:
        c.wait()


if __name__ == "__main__":
    main()
