//! Ports for the processes the tests start, which must be told a port
//! before they listen (the distributor binary, reference analyzers), and
//! for addresses where nothing may listen.
//!
//! They come from 10000..20000, below the kernel's ephemeral range (32768
//! and up by default), where every `bind(127.0.0.1:0)` and every outgoing
//! connection takes its port: so a port a test holds for a process it
//! kills and starts again is not taken meanwhile by a server or a client of
//! another test of this binary. A counter hands each port out once per
//! run; a random first port keeps two runs on one machine apart; a port
//! something listens on is passed over. (`scripts/envtest.sh` takes its
//! control planes' ports from 20000..32000.)

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

const FIRST: u16 = 10_000;
const COUNT: u16 = 10_000;

/// A port in 10000..20000 that no other call of this run has answered and
/// that nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    static START: OnceLock<u16> = OnceLock::new();
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| rand::random::<u16>() % COUNT);
    for _ in 0..COUNT {
        let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + ((u32::from(start) + n) % u32::from(COUNT)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}
