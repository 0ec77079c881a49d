//! Running many seeds, and the summary the CLI and the tests print.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use wackamole::core::config::{FenceKind, Profile, QuorumMode};
use wackamole::core::engine::Breaks;
use wackamole::core::hash::mix64;

use crate::faults::FaultKind;
use crate::kernel::KernelBreaks;
use crate::world::{RunResult, SimConfig, run};

/// A sweep over seeds.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// First seed.
    pub seed_start: u64,
    /// Number of seeds.
    pub seeds: u64,
    /// Cluster sizes (inclusive).
    pub nodes: (usize, usize),
    /// VIP group counts (inclusive).
    pub vips: (usize, usize),
    /// Background loss.
    pub loss: f64,
    /// Fault classes.
    pub faults: Vec<FaultKind>,
    /// Number of faults per run (inclusive).
    pub fault_count: (usize, usize),
    /// `None`: majority mostly, quorum-off (two nodes) for one seed in five.
    pub quorum: Option<QuorumMode>,
    /// Fence.
    pub fence: FenceKind,
    /// Profile.
    pub profile: Profile,
    /// Core breaks.
    pub breaks: Breaks,
    /// Kernel breaks.
    pub kernel_breaks: KernelBreaks,
    /// Worker threads.
    pub threads: usize,
    /// Fault phase length.
    pub fault_phase_s: f64,
    /// Stop the sweep at the first violation.
    pub stop_at_first: bool,
    /// Check every address after every event too.
    pub full_check: bool,
    /// Fail-back delay override.
    pub failback_s: Option<f64>,
    /// Keep whole traces.
    pub full_trace: bool,
    /// Let some seeds run an even number of voters (a warned-about setup).
    pub even_voters: bool,
    /// Time before the first fault (and before holder changes are counted).
    pub warmup_s: f64,
}

impl Default for Sweep {
    fn default() -> Self {
        Sweep {
            seed_start: 0,
            seeds: 100,
            nodes: (2, 16),
            vips: (1, 32),
            loss: 0.0,
            faults: FaultKind::ALL_SAFE.to_vec(),
            fault_count: (2, 6),
            quorum: None,
            fence: FenceKind::Gate,
            profile: Profile::Default,
            breaks: Breaks::default(),
            kernel_breaks: KernelBreaks::default(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            fault_phase_s: 15.0,
            stop_at_first: false,
            full_check: false,
            failback_s: None,
            full_trace: false,
            even_voters: true,
            warmup_s: 3.0,
        }
    }
}

impl Sweep {
    /// The configuration of one seed: sizes and mode are drawn from the seed.
    pub fn config(&self, seed: u64) -> SimConfig {
        let mut r = StdRng::seed_from_u64(mix64(seed ^ 0x000c_0f16));
        let mut c = SimConfig::new(seed);
        c.quorum = self.quorum.unwrap_or(if r.random_bool(0.2) {
            QuorumMode::Off
        } else {
            QuorumMode::Majority
        });
        c.nodes = if c.quorum == QuorumMode::Off {
            2
        } else {
            r.random_range(self.nodes.0..=self.nodes.1.max(self.nodes.0))
        };
        c.groups = r.random_range(self.vips.0..=self.vips.1.max(self.vips.0));
        c.witness = c.quorum == QuorumMode::Majority && c.nodes >= 3 && r.random_bool(0.15);
        // Voters: an odd number up to five, or (one seed in eight) an even number.
        let max = c.nodes.min(5);
        c.voters = if self.even_voters && max >= 2 && r.random_bool(0.125) {
            max - max % 2
        } else {
            max - (1 - max % 2)
        };
        c.loss = if c.quorum == QuorumMode::Off {
            0.0
        } else {
            self.loss
        };
        c.faults = self.faults.clone();
        c.fault_count = self.fault_count;
        c.fence = self.fence;
        c.profile = self.profile;
        c.breaks = self.breaks;
        c.kernel_breaks = self.kernel_breaks;
        c.fault_phase_s = self.fault_phase_s;
        c.warmup_s = self.warmup_s;
        c.full_check = self.full_check;
        c.failback_s = self.failback_s;
        c.full_trace = self.full_trace;
        c.clock_beyond_rho = self.faults.contains(&FaultKind::ClockBeyondRho);
        c
    }

    /// The command line that replays `seed` alone.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut s = format!("cargo run --release -p wackamole-simulations -- --seed {seed}");
        s += &format!(
            " --nodes {}..{} --vips {}..{}",
            self.nodes.0, self.nodes.1, self.vips.0, self.vips.1
        );
        if self.loss > 0.0 {
            s += &format!(" --loss {}", self.loss);
        }
        if self.faults != FaultKind::ALL_SAFE.to_vec() {
            let names: Vec<&str> = self.faults.iter().map(|f| f.name()).collect();
            s += &format!(
                " --faults {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(",")
                }
            );
        }
        if let Some(q) = self.quorum {
            s += if q == QuorumMode::Off {
                " --quorum off"
            } else {
                " --quorum majority"
            };
        }
        if self.fence == FenceKind::Address {
            s += " --fence address";
        }
        match self.profile {
            Profile::Fast => s += " --profile fast",
            Profile::Lean => s += " --profile lean",
            Profile::Default => {}
        }
        for b in break_names(self.breaks, self.kernel_breaks) {
            s += &format!(" --break {b}");
        }
        if self.warmup_s != 3.0 {
            s += &format!(" --warmup {}", self.warmup_s);
        }
        if self.fault_phase_s != 15.0 {
            s += &format!(" --fault-phase {}", self.fault_phase_s);
        }
        if let Some(f) = self.failback_s {
            s += &format!(" --failback {f}");
        }
        if !self.even_voters {
            s += " --odd-voters";
        }
        s
    }

    /// Runs every seed on `threads` threads; `each` sees every result as it lands.
    pub fn run(&self, each: impl Fn(&SimConfig, &RunResult) + Sync) -> Summary {
        let next = AtomicU64::new(0);
        let stop = AtomicU64::new(0);
        let results: Mutex<Vec<(SimConfig, RunResult)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.threads.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= self.seeds || stop.load(Ordering::SeqCst) == 1 {
                            break;
                        }
                        let cfg = self.config(self.seed_start + i);
                        let r = run(cfg.clone());
                        each(&cfg, &r);
                        if self.stop_at_first && !r.violations.is_empty() {
                            stop.store(1, Ordering::SeqCst);
                        }
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((cfg, r));
                    }
                });
            }
        });
        let mut v = results.into_inner().unwrap_or_else(|e| e.into_inner());
        v.sort_by_key(|(c, _)| c.seed);
        Summary::from(v)
    }
}

/// The CLI names of the active breaks.
pub fn break_names(b: Breaks, k: KernelBreaks) -> Vec<&'static str> {
    let mut v = Vec::new();
    if b.quiescence {
        v.push("quiescence");
    }
    if b.incarnation {
        v.push("incarnation");
    }
    if b.quorum_lease {
        v.push("quorum-lease");
    }
    if b.restart_wait {
        v.push("restart-wait");
    }
    if b.release_order {
        v.push("release-order");
    }
    if b.nonce {
        v.push("nonce");
    }
    if b.promise_per_group {
        v.push("promise-per-group");
    }
    if b.voter_settle {
        v.push("voter-settle");
    }
    if b.voter_joint {
        v.push("voter-joint");
    }
    if b.ride {
        v.push("ride");
    }
    if b.refresh {
        v.push("refresh");
    }
    if b.rearm {
        v.push("rearm");
    }
    if b.heartbeat {
        v.push("heartbeat");
    }
    if k.gate_atomic {
        v.push("gate-atomic");
    }
    if k.fence {
        v.push("fence");
    }
    v
}

/// Sets the break named `name`. Returns false for an unknown name.
pub fn set_break(b: &mut Breaks, k: &mut KernelBreaks, name: &str) -> bool {
    match name {
        "quiescence" => b.quiescence = true,
        "incarnation" => b.incarnation = true,
        "quorum-lease" => b.quorum_lease = true,
        "restart-wait" => b.restart_wait = true,
        "release-order" => b.release_order = true,
        "nonce" => b.nonce = true,
        "promise-per-group" => b.promise_per_group = true,
        "voter-settle" => b.voter_settle = true,
        "voter-joint" => b.voter_joint = true,
        "ride" => b.ride = true,
        "refresh" => b.refresh = true,
        "rearm" => b.rearm = true,
        "heartbeat" => b.heartbeat = true,
        "gate-atomic" => k.gate_atomic = true,
        "fence" => k.fence = true,
        _ => return false,
    }
    true
}

/// Aggregates over a sweep.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Every run, by seed.
    pub runs: Vec<(SimConfig, RunResult)>,
}

/// The p-th percentile (0–100) of `v` (nearest rank), or NaN if empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

impl From<Vec<(SimConfig, RunResult)>> for Summary {
    fn from(runs: Vec<(SimConfig, RunResult)>) -> Summary {
        Summary { runs }
    }
}

impl Summary {
    /// Seeds with a violation.
    pub fn violating_seeds(&self) -> Vec<u64> {
        self.runs
            .iter()
            .filter(|(_, r)| !r.violations.is_empty())
            .map(|(c, _)| c.seed)
            .collect()
    }

    /// Seeds with a liveness failure.
    pub fn liveness_seeds(&self) -> Vec<u64> {
        self.runs
            .iter()
            .filter(|(_, r)| !r.liveness.is_empty())
            .map(|(c, _)| c.seed)
            .collect()
    }

    /// All failover times after machine crashes.
    pub fn failovers(&self) -> Vec<f64> {
        self.runs
            .iter()
            .flat_map(|(_, r)| r.failover_crash_ms.iter().copied())
            .collect()
    }

    /// All handover gaps.
    pub fn handovers(&self) -> Vec<f64> {
        self.runs
            .iter()
            .flat_map(|(_, r)| r.handover_ms.iter().copied())
            .collect()
    }

    /// The machine-readable last line.
    pub fn line(&self) -> String {
        let f = self.failovers();
        let h = self.handovers();
        format!(
            "summary: seeds={} violations={} liveness_failures={} failover_p50_ms={:.0} failover_p99_ms={:.0} handover_gap_p50_ms={:.1}",
            self.runs.len(),
            self.violating_seeds().len(),
            self.liveness_seeds().len(),
            percentile(&f, 50.0),
            percentile(&f, 99.0),
            percentile(&h, 50.0),
        )
    }
}
