//! Address lifetime renewals off the agent's loop (gate fence).
//!
//! Every VIP address carries `valid_lft` = [`super::kernel::LIFETIME_S`], renewed
//! with the gate now and then, so that the addresses of an agent that died with its
//! gate flushed still go away on their own. An address write takes the kernel's
//! global RTNL lock, which anything else on the machine may hold for tens of
//! milliseconds (a network namespace or a veth torn down, a container started):
//! measured 53 ms in this project's own test run. On the agent's loop that wait
//! held up the next gate refresh past E. So under the gate the renewals are
//! written here, on a thread of their own, and the loop only queues them.
//!
//! The one rule: no renewal may re-create an address after its group was unbound
//! (`RTM_NEWADDR` with `NLM_F_REPLACE` creates a missing address). A group is
//! renewable from its bind ([`Renewer::allow`]) until its unbind
//! ([`Renewer::forbid`]); the renewal thread holds that set's lock across each
//! write, so `forbid` waits for a renewal in progress and every later one sees the
//! group gone. Without the gate the renewal is the fence itself and stays on the
//! loop, under the lease checks (`kernel.rs`).
//!
//! A renewal that fails is reported back ([`Renewer::take_failed`]): the group's
//! next refresh writes its addresses on the loop, where a missing interface is
//! looked up again and a lasting failure fences the group as before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::core::config::{GroupId, Vip};

use super::rtnl::Rtnl;

/// One interface's share of a group's renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Interface index.
    pub index: u32,
    /// The addresses on it.
    pub vips: Vec<Vip>,
    /// Their label.
    pub label: String,
    /// Lifetime in seconds.
    pub lifetime_s: u32,
}

#[derive(Default)]
struct Queue {
    /// Per group, the newest renewal asked for (a newer one replaces it), with the
    /// group's epoch when it was asked.
    jobs: BTreeMap<GroupId, (u64, Vec<Job>)>,
    /// Per group, how many times it was forbidden: a renewal taken off the queue
    /// before an unbind and a re-bind is not written after them.
    epochs: BTreeMap<GroupId, u64>,
    /// Renewals that failed, with the error, until the loop takes them.
    failed: BTreeMap<GroupId, String>,
    /// Group renewals written, for tests.
    written: u64,
    stop: bool,
}

struct Shared {
    /// The groups whose addresses may be renewed; held across each write.
    allowed: Mutex<BTreeSet<GroupId>>,
    queue: Mutex<Queue>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The renewal thread and the loop's handle on it.
pub struct Renewer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Renewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewer").finish_non_exhaustive()
    }
}

impl Renewer {
    /// Starts the thread with its own rtnetlink socket (opened here, in the
    /// caller's network namespace).
    pub fn start() -> std::io::Result<Renewer> {
        let mut rtnl = Rtnl::new()?;
        let shared = Arc::new(Shared {
            allowed: Mutex::new(BTreeSet::new()),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("wackamole-renew".into())
            .spawn(move || run(&s, &mut rtnl))?;
        Ok(Renewer {
            shared,
            thread: Some(thread),
        })
    }

    /// Group `g` was bound: its addresses may be renewed from now on.
    pub fn allow(&self, g: GroupId) {
        lock(&self.shared.allowed).insert(g);
    }

    /// Group `g` is being unbound: returns once no renewal of it is being written
    /// or can be written any more (until the next [`Renewer::allow`]).
    pub fn forbid(&self, g: GroupId) {
        lock(&self.shared.allowed).remove(&g);
        let mut q = lock(&self.shared.queue);
        q.jobs.remove(&g);
        q.failed.remove(&g);
        *q.epochs.entry(g).or_default() += 1;
    }

    /// Every group is being unbound (a flush, a table change).
    pub fn forbid_all(&self) {
        let groups = std::mem::take(&mut *lock(&self.shared.allowed));
        let mut q = lock(&self.shared.queue);
        q.jobs.clear();
        q.failed.clear();
        for g in groups {
            *q.epochs.entry(g).or_default() += 1;
        }
    }

    /// Queues a renewal of group `g`'s addresses; never waits for the kernel.
    pub fn renew(&self, g: GroupId, jobs: Vec<Job>) {
        self.renew_many(vec![(g, jobs)]);
    }

    /// Queues the renewals of a round's groups at once: the thread wakes once and
    /// writes them together.
    pub fn renew_many(&self, renewals: Vec<(GroupId, Vec<Job>)>) {
        if renewals.is_empty() {
            return;
        }
        let mut q = lock(&self.shared.queue);
        for (g, jobs) in renewals {
            let epoch = q.epochs.get(&g).copied().unwrap_or(0);
            q.jobs.insert(g, (epoch, jobs));
        }
        self.shared.wake.notify_one();
    }

    /// The error of group `g`'s last renewal, if it failed since asked last.
    pub fn take_failed(&self, g: GroupId) -> Option<String> {
        lock(&self.shared.queue).failed.remove(&g)
    }

    /// Renewals written so far.
    pub fn written(&self) -> u64 {
        lock(&self.shared.queue).written
    }

    /// Whether renewals are queued and not yet written.
    pub fn pending(&self) -> bool {
        !lock(&self.shared.queue).jobs.is_empty()
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_one();
        // Not joined: a write may be waiting for RTNL, and nothing is left to
        // protect once the loop is gone (its flush forbade every group first).
        drop(self.thread.take());
    }
}

fn run(s: &Shared, rtnl: &mut Rtnl) {
    loop {
        let jobs = {
            let mut q = lock(&s.queue);
            while q.jobs.is_empty() && !q.stop {
                q = s.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.stop {
                return;
            }
            std::mem::take(&mut q.jobs)
        };
        // Lock order: `allowed`, then `queue` (the loop never holds `queue` while
        // taking `allowed`).
        let allowed = lock(&s.allowed);
        // Every allowed group's addresses on one interface in one netlink write.
        let mut writes: BTreeMap<(u32, String, u32), Vec<(GroupId, Vip)>> = BTreeMap::new();
        {
            let q = lock(&s.queue);
            for (g, (epoch, jobs)) in jobs {
                if !allowed.contains(&g) || q.epochs.get(&g).copied().unwrap_or(0) != epoch {
                    continue;
                }
                for j in jobs {
                    let to = writes.entry((j.index, j.label, j.lifetime_s)).or_default();
                    to.extend(j.vips.into_iter().map(|v| (g, v)));
                }
            }
        }
        let mut failed: BTreeMap<GroupId, String> = BTreeMap::new();
        let mut groups: BTreeSet<GroupId> = BTreeSet::new();
        for ((index, label, lifetime_s), entries) in writes {
            let vips: Vec<Vip> = entries.iter().map(|e| e.1).collect();
            let results = rtnl.addr_set_many(index, &vips, lifetime_s, true, Some(&label));
            for ((g, _), r) in entries.iter().zip(results) {
                groups.insert(*g);
                if let Err(e) = r {
                    failed.entry(*g).or_insert_with(|| e.to_string());
                }
            }
        }
        let mut q = lock(&s.queue);
        q.written += groups.len() as u64;
        q.failed.extend(failed);
        drop(allowed);
    }
}
