"""Hostile inputs against the register_model function: N generated bad inputs, M valid releases.

    .venv/bin/python benchmarks/hostile_inputs.py [--bad 330] [--valid 100]

Starts private servers (fake-gcs-server, the Firestore emulator) and the real function
(functions-framework serving functions/register_model/main.py in its own process) on free ports in
a temp dir, then drives the property tests' generators (tests/functions/
test_register_model_properties.py, hypothesis, derandomized) over real HTTP:

- bad manifests (8 classes: non-finite/oversized numbers, duplicate keys, nesting, lone
  surrogates, broken text, schema violations, impossible dates/duplicate files, file mismatches),
  bad envelopes (11 fields: type, source, subject, id, time, specversion, data, bucket, name,
  generation, size) and requests that are not CloudEvents: for each, the HTTP status, whether
  Firestore changed, and whether exactly one decision line named the field;
- valid releases (random manifests and files): registered exactly once (one ``registered``
  line, both records), and a redelivery of the same event is a ``duplicate`` that writes nothing.

Prints one table; exits 1 if any bad input got a 5xx or wrote anything, or any valid one was not
registered exactly once.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bad", type=int, default=330, help="bad inputs to generate (default 330)")
    parser.add_argument("--valid", type=int, default=100, help="valid releases (default 100)")
    args = parser.parse_args(argv)

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tests.functions import test_hostile_inputs as h
    from tests.functions import test_register_model_properties as p
    from tests.support import delivery as support

    scale = args.bad / 330
    per_manifest, per_envelope = max(1, round(20 * scale)), max(1, round(10 * scale))
    per_body = max(1, args.bad - per_manifest * len(p.MANIFEST_CLASSES) - per_envelope * len(p.ENVELOPE_FIELDS))
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures: list[str] = []

    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        servers = support.Servers(Path(tmp) / "servers").start()
        fn = None
        try:
            gcs = servers.storage_client()
            gcs.create_bucket(support.BUCKET)
            bucket = gcs.bucket(support.BUCKET)
            fn = h.FunctionServer(Path(tmp) / "function", {**servers.env(),
                                                            "MODEL_BUCKET": support.BUCKET}).start()
            db = servers.firestore_client()

            def record(row: str, label: str, reply: h.Reply, written: bool) -> None:
                c = rows[row]
                c["inputs"] += 1
                c["5xx"] += reply.status >= 500
                c["writes"] += written
                kinds = [r["decision"] for r in reply.decisions]
                named = len(kinds) == 1 and kinds[0] in ("rejected", "pending", "dropped") \
                    and bool(reply.decisions[0].get("field"))
                c["one line naming the field"] += named
                c[f"status {reply.status}"] += 1
                if reply.status >= 500 or written or not named:
                    failures.append(f"{row}: {label}: HTTP {reply.status}, written={written}, {kinds}")

            def bad(row, label, reply):
                docs = h.docs(servers)
                record(row, label, reply, bool(docs))
                if docs:
                    servers.clear_firestore()

            t0 = time.monotonic()
            h.upload_folder(bucket, p.BAD_VERSION)
            def manifest_run(kind):
                @settings(p.SETTINGS, max_examples=per_manifest)
                @given(case=p.bad_manifests(kind))
                def run(case):
                    label, body = case
                    bad(f"bad manifest: {kind}", label, p.deliver_manifest(fn, bucket, p.BAD_VERSION, body))
                return run

            for kind in sorted(p.MANIFEST_CLASSES):
                manifest_run(kind)()

            h.upload_folder(bucket, p.PENDING_VERSION)
            pending = h.upload(bucket, f"models/{h.MODEL}/{p.PENDING_VERSION}/manifest.json",
                               h.manifest_bytes(h.base_manifest(p.PENDING_VERSION)))
            def envelope_run(what):
                @settings(p.SETTINGS, max_examples=per_envelope)
                @given(data=st.data())
                def run(data):
                    label, attrs, payload, mode = data.draw(p.bad_envelopes(pending, what))
                    bad(f"bad envelope: {what}", label, fn.post(*p.request_for(attrs, payload, mode)))
                return run

            for what in p.ENVELOPE_FIELDS:
                envelope_run(what)()

            @settings(p.SETTINGS, max_examples=per_body)
            @given(case=p.not_cloudevents())
            def run_body(case):
                label, headers, body = case
                bad("not a CloudEvent", label, fn.post(headers, body))
            run_body()
            bad_seconds = time.monotonic() - t0

            servers.clear_firestore()
            registry = p.Registry(fn, bucket, db)
            valid = collections.Counter()
            t1 = time.monotonic()

            @settings(p.SETTINGS, max_examples=args.valid)
            @given(case=p.valid_releases())
            def run_valid(case):
                manifest, files, mode = case
                valid["inputs"] += 1
                offset = fn._offset()
                try:
                    p.register_valid(fn, bucket, servers, db, manifest, files, mode, registry.known)
                except AssertionError as exc:
                    failures.append(f"valid {manifest['version']}: {str(exc)[:300]}")
                lines = fn.decisions_since(offset)
                valid["registered once"] += [r["decision"] for r in lines] == ["registered", "duplicate"]
                valid["5xx"] += any(r["decision"] == "retry" for r in lines)
            run_valid()
            valid_seconds = time.monotonic() - t1
        finally:
            if fn is not None:
                fn.stop()
            servers.stop()

    total = collections.Counter()
    for c in rows.values():
        total.update({k: v for k, v in c.items() if not k.startswith("status")})
    width = max(map(len, rows)) + 2
    print(f"\n{'bad input class':<{width}} {'inputs':>7} {'5xx':>5} {'writes':>7} {'1 line w/ field':>16}  statuses")
    for row, c in sorted(rows.items()):
        statuses = ", ".join(f"{k[7:]}x{v}" for k, v in sorted(c.items()) if k.startswith("status"))
        print(f"{row:<{width}} {c['inputs']:>7} {c['5xx']:>5} {c['writes']:>7} "
              f"{c['one line naming the field']:>16}  {statuses}")
    print(f"{'TOTAL bad':<{width}} {total['inputs']:>7} {total['5xx']:>5} {total['writes']:>7} "
          f"{total['one line naming the field']:>16}  ({bad_seconds:.1f} s)")
    print(f"\nvalid releases: {valid['inputs']}, registered exactly once (then a duplicate on "
          f"redelivery): {valid['registered once']}, 5xx: {valid['5xx']}  ({valid_seconds:.1f} s)")
    summary = {"bad": total["inputs"], "bad_5xx": total["5xx"], "bad_writes": total["writes"],
               "valid": valid["inputs"], "valid_registered_once": valid["registered once"]}
    print(json.dumps(summary))
    for line in failures[:20]:
        print("FAIL", line)
    ok = (not failures and total["5xx"] == 0 and total["writes"] == 0
          and valid["registered once"] == valid["inputs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
