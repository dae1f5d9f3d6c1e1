"""Schemathesis hooks for .ci/fuzz: reach every operation.

Random data alone never names a key or a role that exists, and a fuzzer
that revokes or narrows its own key spends the rest of the run on 401s.
So, from what .ci/fuzz seeded (FUZZ_SEED, a JSON file), half the cases
are made to name the seeded keys, roles and org, with bodies the API
takes (scopes it accepts, a `confirm` that is the key's name, no stale
`If-Match`); the other half stay as generated. The fuzzer's own key
(its `own_key`) is never the target of a write, in a path or in a body;
each kind of write has seeded keys of its own (.ci/fuzz says which), so
that one kind never leaves the next nothing to do; and the catalogue is
never enforced, which would refuse the seeded scopes for the rest of the
run.
"""

import base64
import json
import os
import random
import subprocess

import schemathesis

SEED = json.load(open(os.environ["FUZZ_SEED"]))
OWN = SEED["own_key"]


def _key_body(path, body):
    body.update(name=f"fuzzed-{random.randrange(10**6)}", description="made by the fuzzer", owner="")
    body["scopes"] = random.choice(SEED["scopes"])
    body.pop("preset", None)
    # Roles come and go during the run; a key names none of them.
    body.pop("roles", None)
    body["allowed_cidrs"] = ["10.0.0.0/8"]
    for field in ("expires_at", "expires_in_days", "secret", "secret_sha256"):
        body.pop(field, None)
    if path.endswith("/import"):
        body["secret"] = "legacy_" + "".join(random.choices("abcdef0123456789", k=32))
    return body


@schemathesis.hook
def map_case(ctx, case):
    if random.random() < 0.5:
        return case
    path = case.operation.path
    params = case.path_parameters or {}
    if "id" in params:
        if path.startswith("/v1/orgs/"):
            params["id"] = "fuzz"
        elif case.method.upper() == "DELETE":
            i = random.randrange(len(SEED["deletable"]))
            params["id"] = SEED["deletable"][i]
            case.query = {"confirm": f"seed-{SEED['first_deletable'] + i}", "reason": "fuzz"}
        elif path.endswith("/revoke"):
            params["id"] = random.choice(SEED["revocable"])
        elif case.method.upper() == "PATCH":
            params["id"] = random.choice(SEED["editable"])
        else:
            params["id"] = random.choice(SEED["keys"])
    if "name" in params:
        if case.method.upper() == "DELETE":
            params["name"] = random.choice(SEED["deletable_roles"])
            case.query = {"force": "true"}
        else:
            params["name"] = random.choice(SEED["roles"])
            if case.method.upper() == "GET":
                case.query = {}
    if case.headers:
        case.headers.pop("If-Match", None)
    body = case.body if isinstance(case.body, dict) else {}
    if path.endswith(("/revoke", "/disable", "/enable")):
        case.body = {"reason": "fuzz"} if path.endswith("/revoke") else body
    elif path.endswith("/rotate"):
        case.body = {"grace_seconds": random.choice([0, 60])}
    elif path.endswith("bulk-revoke"):
        case.body = {"ids": random.sample(SEED["bulk"], k=2), "reason": "fuzz"}
    elif path.endswith("offboard"):
        case.body = {"owner": SEED["owner"]}
    elif case.method.upper() == "PATCH" and path.startswith("/v1/keys/"):
        case.body = {"description": "edited by the fuzzer", "scopes": random.choice(SEED["scopes"])}
        case.query = {}
    elif path.startswith("/v1/keys") and isinstance(case.body, dict):
        case.body = _key_body(path, body)
    elif path == "/v1/roles" and isinstance(case.body, dict):
        case.body = {"name": f"fuzzed-{random.randrange(10**6)}", "scopes": random.choice(SEED["scopes"])}
    elif path.startswith("/v1/roles/") and case.method.upper() == "PATCH":
        case.body = {"scopes": random.choice(SEED["scopes"]), "description": "edited by the fuzzer"}
    elif path in ("/v1/events", "/v1/audit", "/v1/keys") and case.method.upper() == "GET":
        case.query = {}
    elif path == "/v1/proofs/inclusion":
        # The fuzz org's own events: its creation and the seeding.
        case.query = {"seq": random.randrange(2, SEED["seeded_head"] + 1)}
    elif path == "/v1/verify" and isinstance(case.body, dict):
        body["key"] = random.choice(SEED["secrets"])
    elif path == "/v1/leaks":
        _signed_report(case)
    elif path.startswith("/v1/authz"):
        # Asked as a proxy would, with the fuzzer's own key (the run's auth
        # puts it in Authorization): an action that key holds, on a path
        # of one segment (a generated path percent-encodes its slashes,
        # which the rules refuse), and no other generated header.
        case.headers = {"Keyreg-Action": "keys:read"}
        if "original" in params:
            params["original"] = random.choice(["docs", "reports", "q3.csv"])
    return case


def _signed_report(case):
    """A leak report signed by the scanner key .ci/fuzz published: tokens
    that are not keys (a live one would be revoked, and the fuzzer's seeded
    keys are spoken for), signed over the bytes the client sends."""
    case.body = [{"token": f"kr_{random.randrange(10**12)}", "type": "keyreg_api_key",
                  "url": "https://github.com/fuzz/leak/blob/main/.env", "source": "content"}]
    raw = json.dumps(case.body).encode()
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.environ["FUZZ_LEAK_KEY"]],
                               input=raw, capture_output=True, check=True).stdout
    case.headers = {**(case.headers or {}), "Github-Public-Key-Identifier": "fuzz-1",
                    "Github-Public-Key-Signature": base64.b64encode(signature).decode()}


@schemathesis.hook
def filter_case(ctx, case):
    # Keys that writes of another kind must leave alone: the fuzzer's own,
    # the edited ones (only PATCH). A stateful phase may name them from
    # earlier answers.
    target = (case.path_parameters or {}).get("id")
    if target == OWN:
        return False
    if target in SEED["editable"] and case.method.upper() not in ("GET", "PATCH"):
        return False
    body = case.body if isinstance(case.body, dict) else {}
    # The roles edited and read stay (deletes have roles of their own).
    if case.method.upper() == "DELETE" and (case.path_parameters or {}).get("name") in SEED["roles"]:
        return False
    # An enforced catalogue of random actions would refuse every scope the
    # cases name from then on (the tests cover enforcement).
    if case.operation.path == "/v1/catalog" and body.get("enforce") is True:
        return False
    ids = body.get("ids")
    # Generated bodies hold anything: only a list can name the keys.
    protected = {OWN, *SEED["editable"]}
    return not (isinstance(ids, list) and protected & set(map(str, ids))) and body.get("owner") != SEED["own_owner"]
