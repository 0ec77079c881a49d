//! DESIGN §2.2: the quiescence window Q, per group, incarnation-aware.
//!
//! A node starts claiming group g only after g's assignment has named it for Q. The
//! window restarts when g's assignment changes, or when the state, incarnation or
//! epoch of g's previous holder changes (a refuted suspicion, a rejoin with a renewed
//! identity). Events about unrelated members do not restart it, so one flapping node
//! cannot starve the cluster. After an explicit release (a hint from the previous
//! holder) Q is 0. Releasing never waits: this module only gates claiming.

use std::time::Duration;

use super::membership::Liveness;
use super::time::Instant;

/// What the window watches of a previous holder: its SWIM state, incarnation and
/// identity epoch (the freshest identity carrying its name).
pub type HolderSig = (Liveness, u16, u64);

/// One group's assignment history and window.
#[derive(Clone, Debug)]
pub struct Calm {
    /// Designated owner in this node's view.
    pub owner: Option<String>,
    /// The owner before it.
    pub prev: Option<String>,
    prev_sig: Option<HolderSig>,
    /// Start of the current window.
    pub since: Instant,
    /// The previous holder said it released the group (Q is 0).
    pub hint: bool,
    /// When the last release hint arrived.
    pub hint_at: Instant,
}

impl Calm {
    /// A group with no owner yet, its window starting at `now`.
    pub fn new(now: Instant) -> Calm {
        Calm {
            owner: None,
            prev: None,
            prev_sig: None,
            since: now,
            hint: false,
            hint_at: now,
        }
    }

    /// A new assignment result: `owner` is the designated owner, `sig(name)` the
    /// current signature of a member. Returns whether the window restarted.
    /// `incarnation_aware` false is the simulator's `--break incarnation`.
    pub fn assign(
        &mut self,
        owner: Option<String>,
        sig: impl Fn(&str) -> Option<HolderSig>,
        incarnation_aware: bool,
        now: Instant,
    ) -> bool {
        if owner != self.owner {
            self.prev = self.owner.take();
            self.owner = owner;
            self.since = now;
            self.hint = false;
            self.prev_sig = self.prev.as_deref().and_then(&sig);
            return true;
        }
        if incarnation_aware {
            let now_sig = self.prev.as_deref().and_then(&sig);
            if now_sig != self.prev_sig {
                self.prev_sig = now_sig;
                self.since = now;
                return true;
            }
        }
        false
    }

    /// Whether the assignment has been calm for `q` at `now` (or was released to us).
    pub fn calm(&self, q: Duration, now: Instant) -> bool {
        self.hint || now >= self.since + q
    }

    /// When the window ends.
    pub fn ends(&self, q: Duration) -> Instant {
        self.since + q
    }

    /// The previous holder released the group to us.
    pub fn release_hint(&mut self, now: Instant) {
        self.hint = true;
        self.hint_at = now;
    }

    /// Whether `name` is the designated owner.
    pub fn owned_by(&self, name: &str) -> bool {
        self.owner.as_deref() == Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_millis(200);

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn sig_of<'a>(table: &'a [(&'a str, HolderSig)]) -> impl Fn(&str) -> Option<HolderSig> + 'a {
        move |n| table.iter().find(|(m, _)| *m == n).map(|(_, s)| *s)
    }

    #[test]
    fn a_new_owner_restarts_the_window_and_remembers_the_previous_one() {
        let mut c = Calm::new(at(0));
        let t = [("a", (Liveness::Alive, 0, 1))];
        assert!(c.assign(Some("a".into()), sig_of(&t), true, at(10)));
        assert!(!c.calm(Q, at(209)) && c.calm(Q, at(210)));
        assert!(c.assign(Some("b".into()), sig_of(&t), true, at(300)));
        assert_eq!((c.prev.as_deref(), c.ends(Q)), (Some("a"), at(500)));
        // The same result again changes nothing.
        assert!(!c.assign(Some("b".into()), sig_of(&t), true, at(350)));
        assert_eq!(c.since, at(300));
    }

    #[test]
    fn the_previous_holders_incarnation_restarts_it_unrelated_members_do_not() {
        let mut c = Calm::new(at(0));
        let before = [
            ("a", (Liveness::Alive, 0, 1)),
            ("x", (Liveness::Alive, 0, 1)),
        ];
        c.assign(Some("a".into()), sig_of(&before), true, at(0));
        c.assign(Some("b".into()), sig_of(&before), true, at(100));
        // Another member flaps: nothing restarts.
        let flap = [
            ("a", (Liveness::Alive, 0, 1)),
            ("x", (Liveness::Suspect, 3, 1)),
        ];
        assert!(!c.assign(Some("b".into()), sig_of(&flap), true, at(150)));
        // The previous holder refutes a suspicion: a new incarnation restarts Q.
        let refuted = [("a", (Liveness::Alive, 1, 1))];
        assert!(c.assign(Some("b".into()), sig_of(&refuted), true, at(200)));
        assert_eq!(c.since, at(200));
        // Unless the window is broken on purpose (the simulator's --break).
        let rejoined = [("a", (Liveness::Alive, 0, 2))];
        assert!(!c.assign(Some("b".into()), sig_of(&rejoined), false, at(250)));
    }

    #[test]
    fn a_release_hint_makes_the_window_zero_until_the_owner_changes() {
        let mut c = Calm::new(at(0));
        c.assign(Some("b".into()), |_| None, true, at(0));
        c.release_hint(at(20));
        assert!(c.calm(Q, at(21)));
        c.assign(Some("c".into()), |_| None, true, at(30));
        assert!(!c.hint && !c.calm(Q, at(31)));
    }
}
