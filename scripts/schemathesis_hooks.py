"""schemathesis hooks for scripts/schemathesis.sh (loaded through
SCHEMATHESIS_HOOKS=schemathesis_hooks with scripts/ on PYTHONPATH).

schemathesis has no serializer for NDJSON: the document gives its body the
schema of the JSON array (the packets), and this hook writes each item as
one line, so valid and invalid packets reach the NDJSON path too. A value
that is not an array (negative tests) goes out as one line.
"""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode("utf-8")
