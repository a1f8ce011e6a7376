//! The most one request may bring in: what the queue holds when empty,
//! `queue.max_in_flight` packets and `queue.max_in_flight_bytes` bytes of
//! packet JSON. A request past it could never be admitted, however much
//! of the queue drains, so every ingest route refuses it for good (413)
//! instead of asking for a retry (503). The readers of `/api/v1/records`
//! and `/v1/logs` check it as they map, so a body of millions of tiny
//! records costs no more than the queue holds; admission checks it last.

/// The whole queue's size, in packets and in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBounds {
    pub max_packets: usize,
    /// Bytes of packet JSON (and, for `/api/v1/records`, of the invalid
    /// records' dead-letter entries).
    pub max_bytes: usize,
}

/// A request larger than the whole queue, and the bound it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LargerThanQueue {
    #[error("more than {max} packets (queue.max_in_flight)")]
    Packets { max: usize },
    #[error("more than {max} bytes (queue.max_in_flight_bytes)")]
    Bytes { max: usize },
}

impl QueueBounds {
    /// No bound at all: for mapping outside a running service.
    pub const NONE: QueueBounds = QueueBounds {
        max_packets: usize::MAX,
        max_bytes: usize::MAX,
    };

    /// Whether `packets` packets of `bytes` bytes (so far) still fit.
    pub fn check(self, packets: usize, bytes: usize) -> Result<(), LargerThanQueue> {
        if packets > self.max_packets {
            return Err(LargerThanQueue::Packets {
                max: self.max_packets,
            });
        }
        if bytes > self.max_bytes {
            return Err(LargerThanQueue::Bytes { max: self.max_bytes });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LargerThanQueue, QueueBounds};

    #[test]
    fn a_request_fits_up_to_both_bounds_and_names_the_one_it_breaks() {
        let bounds = QueueBounds {
            max_packets: 10,
            max_bytes: 1000,
        };
        assert_eq!(bounds.check(10, 1000), Ok(()));
        assert_eq!(bounds.check(11, 0), Err(LargerThanQueue::Packets { max: 10 }));
        assert_eq!(bounds.check(1, 1001), Err(LargerThanQueue::Bytes { max: 1000 }));
        assert_eq!(
            bounds.check(11, 1001).unwrap_err().to_string(),
            "more than 10 packets (queue.max_in_flight)"
        );
        assert_eq!(QueueBounds::NONE.check(usize::MAX, usize::MAX), Ok(()));
    }
}
