//! An encoded packet's messages read one by one for a delivery body, as
//! they are parsed (no vector of them per packet): what the `ndjson` and
//! `otlp` bodies are written from.

use crate::model::EncodedPacket;
use serde::de::{Deserialize, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// Calls `each` with every message of `packet`, read as `T` from the
/// packet's text where it is.
pub(super) fn for_each_message<'a, T: Deserialize<'a>>(packet: &'a EncodedPacket, each: impl FnMut(T)) {
    let mut messages = serde_json::Deserializer::from_str(packet.messages_json());
    serde::Deserializer::deserialize_seq(
        &mut messages,
        EachMessage {
            each,
            message: PhantomData,
        },
    )
    .expect("an encoded packet's messages always parse");
}

/// The visitor of [`for_each_message`].
struct EachMessage<F, T> {
    each: F,
    message: PhantomData<fn() -> T>,
}

impl<'de, F: FnMut(T), T: Deserialize<'de>> Visitor<'de> for EachMessage<F, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }

    fn visit_seq<S: SeqAccess<'de>>(mut self, mut messages: S) -> Result<(), S::Error> {
        while let Some(message) = messages.next_element::<T>()? {
            (self.each)(message);
        }
        Ok(())
    }
}
