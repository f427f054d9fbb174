#!/usr/bin/env python3
"""Recomputes every hash of a `ledger export` file, independently of the ledger.

    ledger export > events.jsonl
    python3 examples/verify_chain.py events.jsonl      # or: ledger export | python3 ... -

Each line is one event. Its hash is SHA-256 over the previous event's hash of the same stream
(32 zero bytes for seq 1) followed by the UTF-8 bytes of the event's canonical encoding:

    {"event_id":…,"stream":…,"seq":…,"type":…,"data":…,"metadata":…,"recorded_at":…}

with exactly these keys in this order, no whitespace anywhere, object keys inside data and
metadata sorted by code point, strings escaped only where JSON requires it, integers as their
digits and every other number as ECMAScript's Number.prototype.toString writes it, and
recorded_at as YYYY-MM-DDTHH:MM:SS.ffffffZ (as the export writes it).

Prints one line per broken link and exits 1 if there is any; standard library only.
"""

import hashlib
import json
import sys
from decimal import Decimal

GENESIS = bytes(32)


def number(value):
    """A JSON number as the canonical encoding writes it."""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that read back as the same double.
    digits_tuple = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple.digits))
    k = len(digits)
    n = digits_tuple.exponent + k  # the decimal point sits after n digits
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        exponent = n - 1
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    return sign + text


def canonical(value):
    """A JSON value as the canonical encoding writes it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    items = sorted(value.items())
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v) for k, v in items) + "}"


def encoding(event):
    """The event's canonical encoding, as bytes."""
    text = (
        '{"event_id":' + json.dumps(event["event_id"])
        + ',"stream":' + json.dumps(event["stream"], ensure_ascii=False)
        + ',"seq":' + str(event["seq"])
        + ',"type":' + json.dumps(event["type"], ensure_ascii=False)
        + ',"data":' + canonical(event["data"])
        + ',"metadata":' + canonical(event["metadata"])
        + ',"recorded_at":' + json.dumps(event["recorded_at"])
        + "}"
    )
    return text.encode("utf-8")


def verify(lines):
    """Checks every line; returns the broken links found (as sentences) and the counts."""
    heads = {}  # stream -> (seq, hash): memory grows with streams, not events
    broken = []
    events = 0
    for number_, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        event = json.loads(line)
        if "data_key" in event:  # `ledger export --with-keys` writes the tenants' keys first
            continue
        events += 1
        stream, seq = event["stream"], event["seq"]
        last_seq, last_hash = heads.get(stream, (0, GENESIS))
        prev = bytes.fromhex(event["prev_hash"])
        stored = bytes.fromhex(event["hash"])
        where = f"line {number_}: {stream} seq {seq}"
        if seq != last_seq + 1:
            broken.append(f"{where}: does not follow seq {last_seq}")
        elif prev != last_hash:
            broken.append(f"{where}: prev_hash is not the hash of the event before")
        if hashlib.sha256(prev + encoding(event)).digest() != stored:
            broken.append(f"{where}: the hash does not match the event")
        heads[stream] = (seq, stored)
    return broken, events, len(heads)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "-"
    source = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with source:
        broken, events, streams = verify(source)
    for sentence in broken:
        print(sentence)
    print(f"{events} events in {streams} streams, {len(broken)} broken links")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
