//! Leader election with a `coordination.k8s.io/v1` Lease: every replica
//! routes, only the holder of the Lease writes Analyzer status and Events.
//!
//! Each replica tries every `duration / 3`: it creates the Lease when there
//! is none, renews it when it holds it, and takes it over when the holder
//! has not renewed for `duration`, or that its holder released. Updates
//! carry the Lease's `resourceVersion`, so two replicas cannot both win a
//! takeover.
//!
//! At shutdown the holder releases the Lease (no holder, renewed now,
//! lasting one second), so a peer takes it at its next try instead of
//! waiting for `duration` to run out.

use super::KubeState;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::Api;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) struct Election {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub state: Arc<KubeState>,
}

impl Election {
    /// Competes for the Lease until `stop` is cancelled; then releases it
    /// if this replica holds it.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.duration / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => break,
            }
            // A round that cannot finish within a third of the Lease must
            // not leave us claiming it: another replica may take it meanwhile.
            let round = tokio::time::timeout(self.duration / 3, self.try_lead()).await;
            let leading = match round.unwrap_or(Ok(false)) {
                Ok(leading) => leading,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the leader Lease");
                    // Without a renewal we may have lost it: stop writing.
                    false
                }
            };
            let was = self.state.leader.swap(leading, Ordering::AcqRel);
            if was != leading {
                tracing::info!(identity = %self.identity, leading, "leadership changed");
            }
        }
        self.release().await;
    }

    /// Stops leading and hands the Lease back, if this replica holds it.
    async fn release(&self) {
        if !self.state.leader.swap(false, Ordering::AcqRel) {
            return;
        }
        match tokio::time::timeout(self.duration / 3, self.clear_holder()).await {
            Ok(Ok(true)) => tracing::info!(identity = %self.identity, "released the leader Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the leader Lease; it expires instead"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out; it expires instead"),
        }
    }

    /// Clears the holder of the Lease when it is this replica; true when
    /// it was released.
    async fn clear_holder(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        let now = MicroTime(Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..spec
        });
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One round: true when this replica holds the Lease afterwards.
    async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renewed = spec
            .renew_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let lasts = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
        let expired = renewed.checked_add(lasts).map(|end| end < now).unwrap_or(true);
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder == self.identity {
            let acquired = spec.acquire_time.map(|t| t.0).unwrap_or(now);
            self.spec(acquired, now, transitions)
        } else if holder.is_empty() || expired {
            self.spec(now, now, transitions + 1)
        } else {
            return Ok(false);
        };
        lease.spec = Some(new_spec);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15).max(1)),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}
