"""CDNOW_master.txt (customer date(YYYYMMDD) cds dollars) -> a journey log in JSON Lines:
each transaction one `purchase` event worth its dollars.

Usage (from the repository root): python3 training/compare/cdnow_to_events.py data/CDNOW_master.txt.gz cdnow.jsonl
(a plain, uncompressed CDNOW_master.txt works too).
"""
import gzip, json, sys, datetime

src, out = sys.argv[1], sys.argv[2]
n = 0
opener = gzip.open if src.endswith(".gz") else open
with opener(src, "rt") as f, open(out, "w") as w:
    for i, line in enumerate(f, 1):
        parts = line.split()
        if len(parts) != 4 or not parts[1].isdigit():
            continue  # the header line (customer_id date number_of_cds dollar_value) or blanks
        cust, date, cds, dollars = parts
        d = datetime.datetime.strptime(date, "%Y%m%d").replace(tzinfo=datetime.timezone.utc)
        ev = {"event_id": f"cdnow-{i}", "user_id": f"c{cust}", "event_type": "purchase",
              "timestamp": int(d.timestamp() * 1000), "value": float(dollars), "properties": {"cds": cds}}
        w.write(json.dumps(ev) + "\n")
        n += 1
print(f"{n} purchase events written to {out}")
