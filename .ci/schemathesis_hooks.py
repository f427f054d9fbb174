"""Makes schemathesis behave like a correct client where /openapi.json cannot say how.

Some rules of the ledger's HTTP contract tie values together across a request or across
requests, which OpenAPI has no way to express; a generated request that breaks one is
rightly refused, so it would read as a false "schema-valid request rejected":

- an Idempotency-Key names one request: reusing it for a different request is refused
  (422 idempotency_key_reused), so each valid generated key is made unique;
- an event id names one event: reusing it for another event is refused (422 event_id_reused,
  or invalid_input within one batch), so each valid generated event id is made unique;
- the ledger's own stream categories (`tenant-`, `slug-`, `tenanttoken-`, `admintoken-`) take
  only their catalog events (else 422 invalid_event), so a generated append to one of them
  goes to a stream of another category instead;
- a multi-stream append names each stream once (else 422 invalid_input), so later parts that
  repeat a stream are left out;
- `GET /v1/events/live` follows the log until the client leaves, so a request that does not
  bound it with `seconds` gets `seconds=1` (else every valid request would run into the
  request timeout); and the log routes take `cursor` or `after`, not both, so `after` is
  left out of a request with a valid `cursor`;
- a command's expected seq may come in the body (expected_seq) or as If-Match, and when both
  come they must agree (else 400 conflicting_expected_seq), so a valid If-Match that disagrees
  with the body is left out.
- an erasure is final: the erased tenant takes no more commands and its id cannot be registered
  again (410 tenant_erased), so a generated erasure goes to a tenant id of its own (it answers
  404 tenant_not_found) instead of erasing the tenant the other operations use.

Values that are invalid on purpose (negative tests) are left as generated.
"""

import re
import uuid

import schemathesis

HEADER_ID = re.compile(r"^[!-~]{1,200}$")
CURSOR = re.compile(r"^[0-9a-fA-F]{32}$")
IF_MATCH = re.compile(r'^(\*|[0-9]{1,19}|"[0-9]{1,19}"|W/"[0-9]{1,19}")$')


def _is_uuid(value):
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _header(headers, name):
    for key in list(headers or {}):
        if key.lower() == name.lower():
            return key
    return None


CATALOG = re.compile(r"^(tenant|slug|tenanttoken|admintoken)-")


def _free_stream(stream):
    """`stream` moved out of the ledger's own categories, if it is in one."""
    if isinstance(stream, str) and CATALOG.match(stream):
        return "free" + stream
    return stream


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.path == "/v1/tenants/{id}/erase" and case.method.upper() == "POST":
        params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
        if _is_uuid(params.get("id")):
            params["id"] = str(uuid.uuid4())
    if case.path == "/v1/streams/{stream}/events" and case.method.upper() == "POST":
        params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
        if "stream" in params:
            params["stream"] = _free_stream(params["stream"])
    if case.path == "/v1/events/live":
        query = case.query if isinstance(case.query, dict) else {}
        if "seconds" not in query:
            query["seconds"] = 1
            case.query = query
    if case.path in ("/v1/events", "/v1/events/live") and isinstance(case.query, dict):
        cursor = case.query.get("cursor")
        if isinstance(cursor, str) and CURSOR.match(cursor):
            case.query.pop("after", None)
    body = case.body if isinstance(case.body, dict) else {}
    batches = [body.get("events")]
    appends = body.get("appends")
    if isinstance(appends, list):
        seen, kept = set(), []
        for part in appends:
            stream = part.get("stream") if isinstance(part, dict) else None
            if isinstance(stream, str):
                stream = part["stream"] = _free_stream(stream)
                if stream in seen:
                    continue
                seen.add(stream)
            kept.append(part)
            if isinstance(part, dict):
                batches.append(part.get("events"))
        if kept:
            body["appends"] = kept
    for events in batches:
        for event in events if isinstance(events, list) else []:
            if isinstance(event, dict) and _is_uuid(event.get("event_id")):
                event["event_id"] = str(uuid.uuid4())
    headers = case.headers
    if not headers:
        return
    key = _header(headers, "Idempotency-Key")
    if key and isinstance(headers[key], str) and HEADER_ID.match(headers[key]):
        headers[key] = str(uuid.uuid4())
    key = _header(headers, "If-Match")
    expected = body.get("expected_seq")
    if key and expected is not None and isinstance(headers[key], str):
        value = headers[key]
        if IF_MATCH.match(value) and value != "*":
            digits = value.removeprefix("W/").strip('"')
            if str(expected) != str(int(digits)):
                del headers[key]
