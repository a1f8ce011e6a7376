//! Mutexes that keep working after a panic elsewhere.
//!
//! Every lock in the service guards state that a panicking holder cannot
//! leave worse than a stopped service would: counters, queues of packets
//! that are also in the write-ahead log, caches. So a poisoned lock is
//! taken as it is rather than spreading the panic to every other task.

use std::sync::{Mutex, MutexGuard};

pub(crate) trait LockUnpoisoned<T> {
    /// The guard, whether or not an earlier holder panicked.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T> LockUnpoisoned<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_whose_holder_panicked_still_serves() {
        let counter = std::sync::Arc::new(Mutex::new(1));
        let holder = counter.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = holder.lock().unwrap();
            panic!("holder fails");
        })
        .join();
        assert!(panicked.is_err());
        assert!(counter.is_poisoned());
        *counter.lock_unpoisoned() += 1;
        assert_eq!(*counter.lock_unpoisoned(), 2);
    }
}
