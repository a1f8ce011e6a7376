//! OTLP protobuf request bodies: read and mapped to packets
//! (`logs_distributor::otlp::from_protobuf`). Must never panic; every
//! packet must hold the limits and survive a round trip, and when prost
//! decodes the whole body, every record it holds is accepted or rejected.
#![no_main]

mod otlp_checks;
#[allow(dead_code)] // `validate_all` is for the JSON-array targets.
mod roundtrip;

use libfuzzer_sys::fuzz_target;
use logs_distributor::otlp::from_protobuf;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

fuzz_target!(|body: &[u8]| {
    let result = from_protobuf(
        body,
        &otlp_checks::limits(),
        otlp_checks::BOUNDS,
        otlp_checks::now(),
    );
    let records = ExportLogsServiceRequest::decode(body).ok().map(|request| {
        request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    });
    otlp_checks::check(&result, records);
});
