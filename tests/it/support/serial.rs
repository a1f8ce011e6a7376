//! Tests that must not run beside certain others. Every test of the binary
//! runs in one process, several at a time (one per test thread), and most
//! do not mind their neighbours: they take a few milliseconds of CPU. The
//! others take a guard here before they start anything:
//!
//! - [`alone`]: tests that load the machine on purpose for seconds (the
//!   crash test: six clients posting as fast as they can against a
//!   distributor with fsync on every write that is killed and started
//!   again, and five analyzer processes; the replay race of `retries`:
//!   three clients and a replayer as fast as they go), and tests that need
//!   a quiet machine (`http_analyzers`: exact splits and health bounds that
//!   hold only while every probe is answered at once). Such a test runs
//!   while no other test holding a guard runs.
//! - [`beside_others`]: tests with wall-clock bounds of a second or a few
//!   (`kubernetes`: weights applied within a second, a Lease taken within
//!   its duration; the timeouts of `security`; the hostile table's slow
//!   loris and gzip bomb; a Retry-After date in `delivery`), and tests
//!   that load the machine for seconds themselves (a checkpoint under
//!   SIGTERM, a backlog of 40 000 recovered packets, a full disk under
//!   eight clients). They run together, never beside a test that holds
//!   [`alone`].
//!
//! A guard is released when the test ends, also when it fails.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::const_new(());

/// Waits until no other test holds a guard; holds the others off until dropped.
pub(crate) async fn alone() -> RwLockWriteGuard<'static, ()> {
    GATE.write().await
}

/// Waits until no test holds [`alone`]; holds such tests off until dropped.
pub(crate) async fn beside_others() -> RwLockReadGuard<'static, ()> {
    GATE.read().await
}
