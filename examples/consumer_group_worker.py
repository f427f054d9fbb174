#!/usr/bin/env python3
"""One worker of a consumer group that reads the ledger over HTTP only (standard library).

Run MEMBERS copies with MEMBER=0..MEMBERS-1: each gets the tenant streams that fall to it,
queues a welcome email per registered tenant, and appends its results together with its
checkpoint (the ack), so every event is processed exactly once, even across crashes.
Environment: LEDGER_URL, LEDGER_TOKEN (admin), MEMBER, MEMBERS; ONCE=1 stops when caught up.
"""
import json, os, time, urllib.error, urllib.request

URL, TOKEN = os.environ.get("LEDGER_URL", "http://127.0.0.1:8080"), os.environ["LEDGER_TOKEN"]
MEMBER, MEMBERS = int(os.environ.get("MEMBER", "0")), int(os.environ.get("MEMBERS", "1"))
SUB = "welcome_emails"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


call("PUT", f"/v1/subscriptions/{SUB}", {"categories": ["tenant"], "members": MEMBERS})
while True:
    page = call("GET", f"/v1/subscriptions/{SUB}/events?member={MEMBER}&members={MEMBERS}")
    emails = [{"type": "WelcomeEmailQueued", "data": {"tenant_stream": e["stream"], "slug": e["data"]["slug"]}}
              for e in page["events"] if e["type"] == "TenantRegistered"]
    ack = {"subscription": SUB, "member": MEMBER, "cursor": page["next_cursor"], "after": page["checkpoint"]}
    try:
        if emails:
            call("POST", "/v1/events", {"appends": [
                {"stream": f"emails-{MEMBER}", "expected_seq": "any", "events": emails}], "ack": ack})
        elif page["next_cursor"] != page["checkpoint"]:
            call("POST", f"/v1/subscriptions/{SUB}/ack", {"member": MEMBER, "cursor": page["next_cursor"]})
    except urllib.error.HTTPError as refused:
        if refused.code != 409:  # 409 checkpoint_moved: another copy did this page; read again
            raise
    if page["caught_up"]:
        if os.environ.get("ONCE"):
            break
        time.sleep(1)
