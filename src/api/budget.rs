//! The memory request bodies may hold at once, all connections together
//! (`server.max_body_memory`): a semaphore of bytes.
//!
//! A body grows its [`Grant`] before it grows its buffer, and gives bytes
//! back as it lets buffers go; the grant is released with the body. A
//! grant that cannot grow within [`WAIT`] fails its request with 503 and
//! `Retry-After`, so a burst of large or inflating bodies waits or is
//! refused rather than running the process out of memory.

use super::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a body waits for room before its request is refused.
pub(super) const WAIT: Duration = Duration::from_secs(1);
/// Seconds a client refused for want of room is asked to wait.
const RETRY_AFTER: u32 = 1;

/// The shared budget; a clone is one reference count.
#[derive(Clone)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes (at most [`Semaphore::MAX_PERMITS`]).
    pub(crate) fn new(total: usize) -> BodyBudget {
        let total = total.min(Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// A grant of nothing yet, for one body.
    pub(crate) fn grant(&self) -> Grant {
        Grant {
            budget: self.clone(),
            held: None,
        }
    }

    /// Bytes not granted to any body right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// The bytes of the budget one body holds; given back when dropped.
pub(crate) struct Grant {
    budget: BodyBudget,
    held: Option<OwnedSemaphorePermit>,
}

impl Grant {
    /// The bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds at least `bytes` in all, waiting up to [`WAIT`] for the room;
    /// 503 when it does not come (what was held before stays held).
    pub(crate) async fn grow_to(&mut self, bytes: usize) -> Result<(), ApiError> {
        let mut missing = bytes.saturating_sub(self.bytes());
        if missing == 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while missing > 0 {
            let step = u32::try_from(missing).unwrap_or(u32::MAX);
            let acquire = self.budget.bytes.clone().acquire_many_owned(step);
            let permit = match tokio::time::timeout_at(deadline, acquire).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) | Err(_) => return Err(self.no_room()),
            };
            missing -= permit.num_permits();
            match &mut self.held {
                Some(held) => held.merge(permit),
                None => self.held = Some(permit),
            }
        }
        Ok(())
    }

    /// Gives back what is held beyond `bytes`.
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        let surplus = self.bytes().saturating_sub(bytes);
        if let Some(held) = &mut self.held {
            drop(held.split(surplus));
        }
    }

    fn no_room(&self) -> ApiError {
        ApiError::unavailable(
            format!(
                "request bodies being read fill server.max_body_memory ({} bytes); retry shortly",
                self.budget.total
            ),
            RETRY_AFTER,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn grants_grow_shrink_and_are_given_back_when_dropped() {
        let budget = BodyBudget::new(100);
        let mut grant = budget.grant();
        grant.grow_to(60).await.unwrap();
        grant.grow_to(40).await.unwrap();
        assert_eq!((grant.bytes(), budget.available()), (60, 40));
        grant.shrink_to(25);
        assert_eq!((grant.bytes(), budget.available()), (25, 75));
        let mut other = budget.grant();
        other.grow_to(75).await.unwrap();
        drop(grant);
        assert_eq!(budget.available(), 25);
        drop(other);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_without_room_waits_then_is_refused_with_503() {
        let budget = BodyBudget::new(100);
        let mut holder = budget.grant();
        holder.grow_to(90).await.unwrap();
        let mut waiting = budget.grant();
        waiting.grow_to(5).await.unwrap();
        let error = waiting.grow_to(20).await.unwrap_err();
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.retry_after, Some(RETRY_AFTER));
        assert!(
            error.message.contains("server.max_body_memory (100 bytes)"),
            "{}",
            error.message
        );
        assert_eq!(waiting.bytes(), 5, "what was held stays held");
        // Room given back while it waits is taken.
        let released = tokio::spawn(async move {
            tokio::time::sleep(WAIT / 2).await;
            drop(holder);
        });
        waiting.grow_to(20).await.unwrap();
        assert_eq!(waiting.bytes(), 20);
        released.await.unwrap();
    }
}
