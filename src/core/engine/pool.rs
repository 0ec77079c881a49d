//! The VIP pool changing under a running engine (DESIGN §4): a reload's new pool.
//!
//! This node's group table keeps every group it still has in the same slot (index),
//! so nothing about an untouched group changes: not its phase, its claim, its grants,
//! its quiescence window or its kernel queue. A removed group is released like any
//! other (`ReleaseReason::Removed`: stop refreshing, unbind, verify gone, then drop it
//! from the claims) and its slot is *retired* (emptied) once idle; an added group
//! takes a retired idle slot or a new one at the end. Each change gives the table a
//! new digest: claims and metadata carry it from then on, and the previous table is
//! kept to answer members that still ask for it ([`crate::core::table`]).

use super::Engine;
use crate::core::assign;
use crate::core::config::{GroupId, VipGroup};
use crate::core::table;
use crate::core::time::Instant;

impl Engine {
    /// A reload changed this node's pool to `groups`. Untouched groups keep their
    /// slots and state (and preferences); removed ones are released, then retired;
    /// added ones start free. New preferences come with
    /// [`Engine::set_node`](super::Engine::set_node), in slots of the new table.
    pub fn set_pool(&mut self, groups: Vec<VipGroup>, now: Instant) {
        let new: Vec<VipGroup> = groups
            .iter()
            .map(|g| VipGroup::new(g.vips.clone()))
            .collect();
        let old = self.cfg.groups.clone();
        for (s, g) in old.iter().enumerate() {
            if g.vips.is_empty() {
                continue;
            }
            let slot = self.groups.slot_mut(s as GroupId);
            // A group removed by an earlier reload and back in this one stays (its
            // release, if under way, completes; it may be taken again after).
            slot.retiring = !new.contains(g);
            slot.retire_armed = false;
        }
        for g in &new {
            if self.cfg.groups.contains(g) {
                continue;
            }
            let table = &self.cfg.groups;
            let s = usize::from(
                self.groups
                    .take_slot(|i| table[usize::from(i)].vips.is_empty(), now),
            );
            let hash = assign::group_hash(&g.key());
            if s == self.cfg.groups.len() {
                self.cfg.groups.push(g.clone());
                self.rules.group_hash.push(hash);
            } else {
                self.cfg.groups[s] = g.clone();
                self.rules.group_hash[s] = hash;
            }
        }
        // A slot whose group changed is not known to be unable any more (the shell
        // sets the list again for the new table).
        let table = &self.cfg.groups;
        self.local
            .unable
            .retain(|&g| old.get(usize::from(g)) == table.get(usize::from(g)));
        // And the metadata says so now: the shell's next `set_unable` may find the
        // list unchanged and gossip nothing (a node whose link came back after a
        // reload went on gossiping the old list, and the others never gave it its
        // share: simulator seed 63427302401).
        self.refresh_meta();
        self.table_changed(old, now);
        self.groups.dirty_all = true;
        self.drive(now);
    }

    /// Empties the slots of removed groups that were released and idle at the last
    /// drive (and arms those idle now). Returns whether any was emptied.
    pub(super) fn retire_idle(&mut self, now: Instant) -> bool {
        let idle: Vec<GroupId> = self
            .groups
            .retiring()
            .filter(|&g| self.groups.slot(g).idle())
            .collect();
        let mut done = Vec::new();
        for g in idle {
            let s = self.groups.slot_mut(g);
            if s.retire_armed {
                done.push(g);
            } else {
                s.retire_armed = true;
            }
        }
        if done.is_empty() {
            return false;
        }
        let old = self.cfg.groups.clone();
        for g in done {
            let s = self.groups.slot_mut(g);
            s.retiring = false;
            s.retire_armed = false;
            let was = std::mem::replace(
                &mut self.cfg.groups[usize::from(g)],
                VipGroup { vips: Vec::new() },
            );
            self.groups.retired_names.insert(g, was);
            if let Some(c) = &mut self.lease.claimer {
                c.remove(g, now);
            }
        }
        self.table_changed(old, now);
        true
    }

    /// The table's digest after a change: claims and metadata carry the new one; the
    /// old table stays known, for members that ask for it.
    fn table_changed(&mut self, old: Vec<VipGroup>, now: Instant) {
        let d = table::digest(&self.cfg.groups);
        if d == self.lease.table {
            return;
        }
        self.lease.tables.insert(old, now);
        self.lease.table = d;
        if let Some(c) = &mut self.lease.claimer {
            c.set_table(d);
        }
        let pool = self.cfg.pool_digest();
        self.membership.update_meta(|m| {
            m.table = d;
            m.config.pool = pool;
        });
        self.groups.dirty_all = true;
        self.push_table();
    }

    /// Sends this node's new table to every voter and active member before its
    /// claims name it, so that no voter answers them empty while it fetches the table
    /// (a lost part is asked for again: [`table::Tables::should_request`]).
    fn push_table(&mut self) {
        let Some(parts) = table::split(&self.cfg.groups) else {
            return;
        };
        let mut to: Vec<std::net::SocketAddr> = self.voter_addrs();
        to.extend(self.view.active().map(|m| m.id.addr));
        to.sort();
        to.dedup();
        for a in to {
            for p in &parts {
                self.out.send(a, &crate::core::wire::Body::Table(p.clone()));
            }
        }
    }

    /// Group `g` of this node's table: for a retired slot, what it last held (its
    /// release events may still be on their way to the log and the hooks).
    pub fn group(&self, g: GroupId) -> &VipGroup {
        let current = &self.cfg.groups[usize::from(g)];
        if current.vips.is_empty() {
            self.groups.retired_names.get(&g).unwrap_or(current)
        } else {
            current
        }
    }

    /// The digest of this node's group table (it changes with the pool).
    pub fn table_digest(&self) -> table::TableDigest {
        self.lease.table
    }
}
