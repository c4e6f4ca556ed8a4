//! Who works, decided through `coordination.k8s.io/v1` Leases held with kube-lease-manager (the
//! maintained crate; it takes, renews and releases a Lease with server-side apply, so two
//! holders are impossible). Two ways:
//! - **leader election**: one Lease, one holder; the other replicas wait and take over when the
//!   holder stops renewing (`--leader-election`);
//! - **sharding**: every replica holds a Lease of its own, `<lease>-member-<identity>`, and
//!   works on the apps consistent hashing gives it among the replicas whose Lease is fresh
//!   (`--sharding`, see [`Shards`]). A replica that dies stops renewing; within the lease
//!   duration the others see its Lease expire and take its apps.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// A Lease this replica holds (or waits for), renewed in the background.
pub struct Held {
    name: String,
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Held {
    /// Start holding `namespace/name` as `identity`: taken as soon as it is free or expired,
    /// renewed before `duration` runs out.
    pub async fn start(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Result<Held> {
        let seconds = duration.as_secs().max(2);
        // Renew when a third of the duration is left: two missed renewals still hold it.
        let grace = (seconds / 3).max(1);
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(seconds)
            .with_grace(grace)
            .build()
            .await
            .map_err(|e| Error::Lease {
                lease: format!("{namespace}/{name}"),
                message: e.to_string(),
            })?;
        let (state, task) = manager.watch().await;
        Ok(Held {
            name: format!("{namespace}/{name}"),
            state,
            task,
        })
    }

    /// Whether the Lease is ours now.
    pub fn holds(&self) -> bool {
        *self.state.borrow()
    }

    /// Wait until the Lease is ours; `false` if `stop` turned true first.
    pub async fn acquired(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let stopped = async {
            if stop.wait_for(|s| *s).await.is_err() {
                // Nobody can ask us to stop any more.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            held = self.state.wait_for(|h| *h) => held.is_ok(),
            () = stopped => false,
        }
    }

    /// A future that ends when the Lease, once held, is no longer ours (another replica took
    /// it: ours was not renewed in time).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut state = self.state.clone();
        async move {
            let _ = state.wait_for(|h| !*h).await;
        }
    }

    /// Give the Lease up (at shutdown), so that another replica need not wait for it to expire.
    pub async fn release(self) {
        let Held { name, state, task } = self;
        // Closing the channel makes kube-lease-manager's task release the Lease and end.
        drop(state);
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => tracing::info!(lease = %name, "lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(lease = %name, error = %e, "releasing the lease"),
            Ok(Err(e)) => tracing::warn!(lease = %name, error = %e, "releasing the lease"),
            Err(_) => tracing::warn!(lease = %name, "releasing the lease took more than 5 s"),
        }
    }
}

/// The name of a replica's membership Lease.
pub fn member_lease(lease: &str, identity: &str) -> String {
    argo_drift_cluster::records::record_name(&[lease, "member", identity])
}

/// Which replica works on which application: rendezvous hashing (highest random weight, a
/// consistent hash) over the live members. A member joining or leaving moves only the apps it
/// gains or had; every replica computes the same owner from the same member list.
pub struct Shards {
    identity: String,
    sharded: bool,
    /// The live members (their identities) as last seen; empty until this replica has joined.
    members: RwLock<Arc<Vec<String>>>,
}

impl Shards {
    /// No sharding: this replica works on every app.
    pub fn whole(identity: &str) -> Arc<Shards> {
        Arc::new(Shards {
            identity: identity.to_string(),
            sharded: false,
            members: RwLock::new(Arc::new(vec![identity.to_string()])),
        })
    }

    /// Sharding: nothing is ours until [`follow_members`] has seen the members.
    pub fn sharded(identity: &str) -> Arc<Shards> {
        Arc::new(Shards {
            identity: identity.to_string(),
            sharded: true,
            members: RwLock::new(Arc::new(Vec::new())),
        })
    }

    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// Whether this replica works on application `key` (`namespace/name`).
    pub fn owns(&self, key: &str) -> bool {
        if !self.sharded {
            return true;
        }
        owner(&self.members(), key) == Some(self.identity.as_str())
    }

    pub fn members(&self) -> Arc<Vec<String>> {
        match self.members.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Set the members; the previous ones when they changed.
    fn set_members(&self, members: Vec<String>) -> Option<Arc<Vec<String>>> {
        let mut current = match self.members.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if **current == members {
            return None;
        }
        Some(std::mem::replace(&mut *current, Arc::new(members)))
    }

    /// Whether application `key` became this replica's when the members went from `previous`
    /// to the current ones: the apps to analyse after a change (the ones it kept need nothing,
    /// the ones it lost are the new owner's).
    pub fn gained(&self, previous: &[String], key: &str) -> bool {
        let me = Some(self.identity.as_str());
        owner(&self.members(), key) == me && owner(previous, key) != me
    }
}

/// The member that owns `key`: the one whose hash with the key is highest.
pub fn owner<'a>(members: &'a [String], key: &str) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (weight(m, key), m.as_str()))
        .map(String::as_str)
}

fn weight(member: &str, key: &str) -> u64 {
    let h = argo_drift_cluster::records::fnv64(format!("{member}\n{key}").as_bytes());
    // FNV's low bits mix poorly for similar inputs; splitmix64's finaliser spreads them.
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The identities holding a fresh membership Lease of `lease` in `namespace`.
pub async fn live_members(api: &Api<Lease>, lease: &str, now: Timestamp) -> Result<Vec<String>> {
    let prefix = member_lease(lease, "");
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!(
            "listing the Leases in {}",
            api.namespace().unwrap_or_default()
        )))?;
    let members: BTreeSet<String> = list
        .items
        .iter()
        .filter(|l| {
            l.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .filter_map(|l| {
            let spec = l.spec.as_ref()?;
            let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
            let renewed = spec.renew_time.as_ref()?.0;
            let seconds = i64::from(spec.lease_duration_seconds?);
            (now <= renewed + SignedDuration::from_secs(seconds)).then(|| holder.to_string())
        })
        .collect();
    Ok(members.into_iter().collect())
}

/// Keep `shards` up to date with the live members, looking every `every`; `changed` is called
/// when the members change (every app is then looked at again: some are now ours, some no
/// longer). This replica's own Lease must be held before: its share starts only after `every`
/// more, so that the others have seen it join before it works.
pub async fn follow_members(
    api: Api<Lease>,
    lease: String,
    shards: Arc<Shards>,
    every: Duration,
    changed: impl Fn(&[String], &[String]) + Send + 'static,
) {
    tokio::time::sleep(every + every / 2).await;
    loop {
        match live_members(&api, &lease, Timestamp::now()).await {
            Ok(mut members) => {
                // Our own Lease is held (or this task is stopped with the process): we are a
                // member even if a slow list does not show it yet.
                if !members.contains(&shards.identity) {
                    members.push(shards.identity.clone());
                    members.sort();
                }
                if let Some(previous) = shards.set_members(members.clone()) {
                    tracing::info!(members = ?members, "replicas sharing the applications changed");
                    changed(&previous, &members);
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the replicas' Leases"),
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("argo-drift-{i}")).collect()
    }

    #[test]
    fn every_app_has_one_owner_and_a_member_leaving_moves_only_its_own_apps() {
        let three = members(3);
        let apps: Vec<String> = (0..3000)
            .map(|i| format!("team-{}/app-{i}", i % 7))
            .collect();
        let mut share = std::collections::HashMap::<&str, usize>::new();
        for a in &apps {
            *share.entry(owner(&three, a).unwrap()).or_default() += 1;
        }
        // Spread evenly (each about 1000; the hash is not biased to one member).
        for m in &three {
            let n = share[m.as_str()];
            assert!((850..1150).contains(&n), "{m}: {n} of 3000");
        }
        // argo-drift-1 leaves: its apps spread over the others, no other app moves.
        let two = vec![three[0].clone(), three[2].clone()];
        for a in &apps {
            let before = owner(&three, a).unwrap();
            let after = owner(&two, a).unwrap();
            if before != "argo-drift-1" {
                assert_eq!(before, after, "{a} moved though its owner stayed");
            }
        }
        assert_eq!(owner(&[], "x/y"), None);
        // The order members are listed in does not matter.
        let mut reversed = three.clone();
        reversed.reverse();
        assert!(apps.iter().all(|a| owner(&three, a) == owner(&reversed, a)));
    }

    #[test]
    fn without_sharding_every_app_is_ours_and_sharded_nothing_is_before_joining() {
        assert!(Shards::whole("a").owns("x/y"));
        let s = Shards::sharded("a");
        assert!(!s.owns("x/y"));
        assert!(s.set_members(vec!["a".into()]).is_some());
        assert!(s.set_members(vec!["a".into()]).is_none());
        assert!(s.owns("x/y"));
    }

    #[test]
    fn after_a_member_leaves_a_survivor_gains_only_apps_the_leaver_had() {
        let three = members(3);
        let apps: Vec<String> = (0..3000).map(|i| format!("team/app-{i}")).collect();
        let survivor = Shards::sharded(&three[0]);
        // Joining: every app it owns is gained.
        survivor.set_members(three.clone());
        assert!(apps
            .iter()
            .all(|a| survivor.gained(&[], a) == survivor.owns(a)));
        let two = vec![three[0].clone(), three[2].clone()];
        survivor.set_members(two);
        let gained: Vec<&String> = apps.iter().filter(|a| survivor.gained(&three, a)).collect();
        assert!(!gained.is_empty());
        for a in &apps {
            let had = owner(&three, a).unwrap();
            let gains = survivor.gained(&three, a);
            assert_eq!(gains, had == three[1] && survivor.owns(a), "{a}");
        }
    }
}
