"""An application that logs through the OpenTelemetry Python SDK: a
LoggerProvider whose BatchLogRecordProcessor exports with the OTLP/HTTP
exporter (protobuf), configured only by the SDK's standard environment
variables, as a user would configure it:

    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT   http://HOST:PORT/v1/logs
    OTEL_EXPORTER_OTLP_LOGS_HEADERS    Authorization=Bearer%20TOKEN (optional)
    OTEL_EXPORTER_OTLP_LOGS_COMPRESSION gzip (optional)
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES

Emits --count records, body "record <i> of <run>", with the attributes
run (string), index (int), even (bool), ratio (double) and, every third
record, tags (an array of strings); severity WARN for odd indexes, INFO
for even ones. Flushes, shuts the provider down, and prints one JSON line:
{"emitted": N, "flushed": true|false}. Exits 1 when the flush did not
finish. (Used by tests/it/otlp_sdk.rs; scripts/otel-python-sdk.sh
installs the SDK.)
"""

import argparse
import json
import sys

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--run", required=True, help="a name for this run, in every record")
    args = parser.parse_args()

    # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
    # OTLPLogExporter() reads the OTEL_EXPORTER_OTLP_LOGS_* variables.
    provider = LoggerProvider(resource=Resource.create())
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    logger = provider.get_logger("logs-distributor.sdk-client", "1.0.0")
    for index in range(args.count):
        odd = index % 2 == 1
        attributes = {
            "run": args.run,
            "index": index,
            "even": not odd,
            "ratio": index / 4,
        }
        if index % 3 == 0:
            attributes["tags"] = ["a", "b"]
        logger.emit(
            severity_number=SeverityNumber.WARN if odd else SeverityNumber.INFO,
            severity_text="WARN" if odd else "INFO",
            body=f"record {index} of {args.run}",
            attributes=attributes,
        )
    flushed = provider.force_flush(30_000)
    provider.shutdown()
    print(json.dumps({"emitted": args.count, "flushed": flushed}))
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
