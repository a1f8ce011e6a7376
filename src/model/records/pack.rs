//! Mapped records gathered into packets, in order: a packet is closed when
//! it holds `records.max_messages_per_packet` messages, or when the next
//! message would take it past `limits.max_packet_bytes` of JSON.

use super::fields::Mapped;
use crate::model::encode::PacketEncoder;
use crate::model::EncodedPacket;

/// Room the encoder starts with for a packet; it grows as messages come.
const START_BYTES: usize = 4096;

pub(super) struct Packer {
    max_messages: usize,
    max_bytes: usize,
    packets: Vec<EncodedPacket>,
    open: Option<PacketEncoder>,
    /// JSON bytes of the closed packets.
    closed_bytes: usize,
}

impl Packer {
    pub(super) fn new(max_messages: usize, max_bytes: usize) -> Packer {
        Packer {
            max_messages,
            max_bytes,
            packets: Vec::new(),
            open: None,
            closed_bytes: 0,
        }
    }

    /// Adds the record's message to the open packet, or to a new one when
    /// it is full; a message that no packet could hold is refused with the
    /// reason, and nothing changes.
    pub(super) fn push(&mut self, record: &Mapped) -> Result<(), String> {
        let fields = record.fields();
        if let Some(open) = &mut self.open {
            if open.message_count() < self.max_messages && open.push_within(&fields, self.max_bytes).is_ok() {
                return Ok(());
            }
        }
        let mut fresh = PacketEncoder::new(uuid::Uuid::new_v4().to_string(), START_BYTES);
        fresh.push_within(&fields, self.max_bytes).map_err(|bytes| {
            format!(
                "the record makes a packet of {bytes} bytes on its own: at most {} are allowed (limits.max_packet_bytes)",
                self.max_bytes
            )
        })?;
        self.close();
        self.open = Some(fresh);
        Ok(())
    }

    /// Packets so far, the open one included.
    pub(super) fn packet_count(&self) -> usize {
        self.packets.len() + usize::from(self.open.is_some())
    }

    /// JSON bytes of the packets so far, the open one included.
    pub(super) fn bytes(&self) -> usize {
        self.closed_bytes + self.open.as_ref().map_or(0, PacketEncoder::json_bytes)
    }

    /// Every packet, in order.
    pub(super) fn finish(mut self) -> Vec<EncodedPacket> {
        self.close();
        self.packets
    }

    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            let packet = open.finish();
            self.closed_bytes += packet.json_bytes();
            self.packets.push(packet);
        }
    }
}
