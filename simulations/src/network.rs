//! The model network: a LAN's delays with rare reordering, very late and duplicated
//! datagrams, background and per-link loss, cut links (partitions, one-way cuts) and
//! congested links toward a node. Every choice is drawn from the world's seeded RNG.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use rand::RngExt;
use rand::rngs::StdRng;

use crate::clock::Tau;

const MS: Tau = 1_000_000;

/// Probability that a datagram is delivered twice.
pub const DUPLICATE: f64 = 0.005;
/// A draw below this is a very late datagram (probability 0.1 %: e.g. a grant that
/// arrives across a release).
pub const VERY_LATE_BELOW: f64 = 0.001;
/// A draw below this (and not very late) is reordered (probability 2 %).
pub const REORDERED_BELOW: f64 = 0.021;
/// A LAN's one-way delay.
pub const LAN_DELAY: Range<Tau> = 50_000..400_000;
/// The delay of a reordered datagram.
pub const REORDER_DELAY: Range<Tau> = MS..8 * MS;
/// The delay of a very late datagram.
pub const VERY_LATE_DELAY: Range<Tau> = 100 * MS..600 * MS;

/// The links between nodes, by index.
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// Directed links that drop everything.
    pub blocked: BTreeSet<(usize, usize)>,
    /// Extra delay range on datagrams toward a node (congested link).
    pub slow_to: BTreeMap<usize, (Tau, Tau)>,
    /// Extra loss on a directed link.
    pub link_loss: BTreeMap<(usize, usize), f64>,
    /// Background loss (raised during a loss burst).
    pub loss: f64,
    /// Datagrams and bytes sent after the fault phase (steady state).
    pub steady: (u64, u64),
}

impl Network {
    /// A network with background loss `loss`.
    pub fn new(loss: f64) -> Network {
        Network {
            loss,
            ..Network::default()
        }
    }

    /// A datagram from `from` to `to`: the delays of each copy that arrives (none if
    /// the link is cut or it is lost; two if duplicated).
    pub fn route(&self, rng: &mut StdRng, from: usize, to: usize) -> Vec<Tau> {
        if self.blocked.contains(&(from, to)) {
            return Vec::new();
        }
        let loss = self
            .loss
            .max(self.link_loss.get(&(from, to)).copied().unwrap_or(0.0));
        if loss > 0.0 && rng.random::<f64>() < loss {
            return Vec::new();
        }
        let copies = if rng.random::<f64>() < DUPLICATE {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let r: f64 = rng.random();
                let extra = self
                    .slow_to
                    .get(&to)
                    .map_or(0, |&(lo, hi)| rng.random_range(lo..hi));
                extra
                    + if r < VERY_LATE_BELOW {
                        rng.random_range(VERY_LATE_DELAY)
                    } else if r < REORDERED_BELOW {
                        rng.random_range(REORDER_DELAY)
                    } else {
                        rng.random_range(LAN_DELAY)
                    }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn cut_links_drop_everything_and_delays_stay_in_their_ranges() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut n = Network::new(0.0);
        n.blocked.insert((0, 1));
        assert!(n.route(&mut rng, 0, 1).is_empty());
        let mut late = 0;
        let mut copies = 0;
        for _ in 0..20_000 {
            for d in n.route(&mut rng, 1, 0) {
                copies += 1;
                assert!((LAN_DELAY.start..VERY_LATE_DELAY.end).contains(&d));
                late += usize::from(d >= VERY_LATE_DELAY.start);
            }
        }
        assert!(copies > 20_000 && copies < 20_400, "{copies}");
        assert!((5..60).contains(&late), "{late}");
    }

    #[test]
    fn link_loss_and_slow_links_apply_in_one_direction() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut n = Network::new(0.0);
        n.link_loss.insert((0, 1), 1.0);
        n.slow_to.insert(1, (100 * MS, 500 * MS));
        assert!(n.route(&mut rng, 0, 1).is_empty());
        assert!(n.route(&mut rng, 2, 1).iter().all(|&d| d >= 100 * MS));
        assert!(n.route(&mut rng, 1, 0).iter().all(|&d| d < 100 * MS));
    }
}
