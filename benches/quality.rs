//! Detection-quality harness (a bench binary, not a test): streams with known change points,
//! our detectors (the crate's public API, the code the service runs) and River's, side by side.
//!
//! Run: `cargo bench --bench quality [-- --seeds N] [--quick] [--kswin-seeds N] [--no-river]`.
//! Prints a Markdown table for BENCHMARKS.md on stdout; progress goes to stderr.
//!
//! Streams: 20,000 events, base N(0, 1), change at event 10,000 (none for "no drift"); event
//! `i` has timestamp `i × 100 ms`. Seed `k` of scenario row `r` draws from
//! `StdRng::seed_from_u64(1000 × r + k)`: independent noise per stream, so every row gives an
//! independent false-alarm estimate (noise shared across rows would copy the no-drift row's
//! pre-change alarms into every drifting row).
//!
//! Detectors (ours):
//! - ADWIN, River's default parameters, on every value; each `update` returning true is an alarm.
//! - PSI and KS on event-time windows: the first 5,000 events are the reference (10 coarse bins,
//!   refinement 16); then 1-minute panes (lateness 0) and a 5-pane window; at each pane close,
//!   if the window holds ≥ 1,000 events, PSI ≥ 0.2 (resp. sketch-KS p < 0.001) is a breach.
//!   An alarm is an OK→FIRING transition after 2 consecutive breaches (FIRING→OK after 2 clean
//!   evaluations), attributed to the event whose arrival closed the pane.
//!
//! River 0.26.1 (`benches/quality_river.py`, run with `target/pyenv/bin/python` or
//! `$DRIFTWATCH_PYTHON`) reads the same streams from `target/quality/` and runs `ADWIN()`,
//! `KSWIN(alpha=0.005, window_size=100, stat_size=30, seed=<seed>)` and `PageHinkley()`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch::detect::adwin::{Adwin, AdwinParams};
use driftwatch::detect::binning::{sorted_finite, FineGrid};
use driftwatch::detect::divergence::psi;
use driftwatch::detect::sketch::{ks_from_sketch, ReferenceSample, WindowSketch};
use driftwatch::detect::window::{Admission, PaneClock, PaneWindow};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::{json, Value};

const STREAM_LEN: usize = 20_000;
const CHANGE_AT: usize = 10_000;
const RAMP_LEN: usize = 3_000;
const EVENT_SPACING_MS: i64 = 100;
const REFERENCE_LEN: usize = 5_000;
const COARSE_BINS: usize = 10;
const REFINEMENT: usize = 16;
const PANE_MS: i64 = 60_000;
const LATENESS_MS: i64 = 0;
const WINDOW_PANES: usize = 5;
const MIN_WINDOW_EVENTS: u64 = 1_000;
const PSI_THRESHOLD: f64 = 0.2;
const KS_P_THRESHOLD: f64 = 0.001;
/// Consecutive breaches to fire, consecutive clean evaluations to resolve.
const POLICY_K: u32 = 2;
const DEFAULT_SEEDS: usize = 20;
const QUICK_SEEDS: usize = 5;
/// Budget (seconds) of the whole River run; KSWIN is slow in Python, its seeds are cut to fit.
const KSWIN_BUDGET_S: f64 = 120.0;
const QUICK_KSWIN_BUDGET_S: f64 = 30.0;
/// Stream seed = `SEED_STRIDE × scenario row + k`, k = 0..seeds.
const SEED_STRIDE: u64 = 1000;

/// One generated stream.
struct Stream {
    /// Row in `SCENARIOS`.
    scenario: usize,
    /// k: the stream's number within its scenario (0..seeds).
    replica: usize,
    /// RNG seed (also KSWIN's seed).
    seed: u64,
    values: Vec<f64>,
}

#[derive(Clone, Copy)]
enum Drift {
    None,
    /// Abrupt mean shift by this many σ at the change point.
    Shift(f64),
    /// Linear mean ramp from 0 to this many σ over `RAMP_LEN` events from the change point.
    Ramp(f64),
    /// σ jumps from 1 to this value at the change point.
    Scale(f64),
}

struct Scenario {
    name: &'static str,
    drift: Drift,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "no drift",
        drift: Drift::None,
    },
    Scenario {
        name: "abrupt mean +0.25σ",
        drift: Drift::Shift(0.25),
    },
    Scenario {
        name: "abrupt mean +0.5σ",
        drift: Drift::Shift(0.5),
    },
    Scenario {
        name: "abrupt mean +1σ",
        drift: Drift::Shift(1.0),
    },
    Scenario {
        name: "gradual mean →0.5σ (3k ramp)",
        drift: Drift::Ramp(0.5),
    },
    Scenario {
        name: "gradual mean →1σ (3k ramp)",
        drift: Drift::Ramp(1.0),
    },
    Scenario {
        name: "variance σ 1→1.5",
        drift: Drift::Scale(1.5),
    },
    Scenario {
        name: "variance σ 1→2",
        drift: Drift::Scale(2.0),
    },
];

impl Drift {
    fn drifts(self) -> bool {
        !matches!(self, Drift::None)
    }

    fn generate(self, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..STREAM_LEN)
            .map(|i| {
                let z: f64 = rng.sample(StandardNormal);
                if i < CHANGE_AT {
                    return z;
                }
                match self {
                    Drift::None => z,
                    Drift::Shift(mu) => mu + z,
                    Drift::Ramp(mu) => {
                        let progress = ((i - CHANGE_AT) as f64 / RAMP_LEN as f64).min(1.0);
                        mu * progress + z
                    }
                    Drift::Scale(sigma) => sigma * z,
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Our detectors
// ---------------------------------------------------------------------------------------------

fn run_adwin(stream: &[f64]) -> Vec<usize> {
    let mut adwin = Adwin::new(AdwinParams::default()).expect("default params are valid");
    stream
        .iter()
        .enumerate()
        .filter_map(|(i, &x)| adwin.update(x).then_some(i))
        .collect()
}

/// The product's alert policy: OK→FIRING after `POLICY_K` consecutive breaches, FIRING→OK
/// after `POLICY_K` consecutive clean evaluations.
#[derive(Default)]
struct Hysteresis {
    firing: bool,
    streak: u32,
}

impl Hysteresis {
    /// Feeds one evaluation; returns true on an OK→FIRING transition (an alarm).
    fn observe(&mut self, breach: bool) -> bool {
        if breach != self.firing {
            self.streak += 1;
            if self.streak >= POLICY_K {
                self.firing = breach;
                self.streak = 0;
                return breach;
            }
        } else {
            self.streak = 0;
        }
        false
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WindowStat {
    Psi,
    Ks,
}

/// PSI or sketch-KS on event-time pane windows against the first `REFERENCE_LEN` events.
fn run_windowed(stream: &[f64], stat: WindowStat) -> Vec<usize> {
    let sorted = sorted_finite(&stream[..REFERENCE_LEN]);
    let grid =
        FineGrid::from_sorted(&sorted, COARSE_BINS, REFINEMENT).expect("non-empty reference");
    let mut reference_cells = vec![0u64; grid.cells()];
    for &x in &stream[..REFERENCE_LEN] {
        reference_cells[grid.cell_of(x)] += 1;
    }
    let reference_coarse = grid.coarse_counts(&reference_cells);
    let reference = ReferenceSample::new(sorted, grid);
    let grid = reference.grid();

    let mut clock = PaneClock::new(PANE_MS, LATENESS_MS).expect("valid pane settings");
    let mut window = PaneWindow::new(grid.cells(), WINDOW_PANES).expect("at least one pane");
    let mut policy = Hysteresis::default();
    let mut alarms = Vec::new();
    for (i, &x) in stream.iter().enumerate().skip(REFERENCE_LEN) {
        let timestamp = i as i64 * EVENT_SPACING_MS;
        match clock.admit(timestamp, None) {
            Admission::OnTime { pane } => window.record_value(pane, grid.cell_of(x), x),
            Admission::Late | Admission::TooFarAhead => {
                unreachable!("timestamps increase evenly and no jump guard is set")
            }
        }
        let Some(closed) = clock.advance() else {
            continue;
        };
        window.close_through(closed);
        if window.count() < MIN_WINDOW_EVENTS {
            continue;
        }
        let breach = match stat {
            WindowStat::Psi => psi(&reference_coarse, &grid.coarse_counts(window.counts()))
                .is_ok_and(|value| value >= PSI_THRESHOLD),
            WindowStat::Ks => {
                let sketch = WindowSketch {
                    cell_counts: window.counts(),
                    low_tail_sum: window.sums().low_tail_sum,
                    high_tail_sum: window.sums().high_tail_sum,
                };
                ks_from_sketch(&reference, &sketch).is_ok_and(|ks| ks.p_value < KS_P_THRESHOLD)
            }
        };
        if policy.observe(breach) {
            alarms.push(i);
        }
    }
    alarms
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// One detector's figures on one scenario.
struct Cell {
    streams: usize,
    /// Streams with an alarm at or after the change (drifting scenarios only).
    detected: usize,
    false_alarms: usize,
    /// Events in which an alarm would have been false, summed over the streams.
    false_alarm_exposure: usize,
    delays: Vec<usize>,
}

impl Cell {
    /// `alarms` per stream; `monitored_from` is the first event the detector judges.
    fn new<'a>(
        drifts: bool,
        monitored_from: usize,
        alarms: impl Iterator<Item = &'a [usize]>,
    ) -> Self {
        let false_until = if drifts { CHANGE_AT } else { STREAM_LEN };
        let mut cell = Cell {
            streams: 0,
            detected: 0,
            false_alarms: 0,
            false_alarm_exposure: 0,
            delays: Vec::new(),
        };
        for stream_alarms in alarms {
            cell.streams += 1;
            cell.false_alarms += stream_alarms.iter().filter(|&&a| a < false_until).count();
            cell.false_alarm_exposure += false_until.saturating_sub(monitored_from);
            if drifts {
                if let Some(&first) = stream_alarms.iter().find(|&&a| a >= CHANGE_AT) {
                    cell.detected += 1;
                    cell.delays.push(first - CHANGE_AT);
                }
            }
        }
        cell
    }

    fn tpr(&self, drifts: bool) -> String {
        if !drifts || self.streams == 0 {
            "—".into()
        } else {
            format!("{:.0}%", 100.0 * self.detected as f64 / self.streams as f64)
        }
    }

    fn false_alarms_per_million(&self) -> String {
        if self.false_alarm_exposure == 0 {
            return "—".into();
        }
        let rate = self.false_alarms as f64 / self.false_alarm_exposure as f64 * 1e6;
        if rate == 0.0 {
            "0".into()
        } else if rate < 10.0 {
            format!("{rate:.1}")
        } else {
            format!("{rate:.0}")
        }
    }

    fn mean_delay(&self, drifts: bool) -> String {
        if !drifts || self.delays.is_empty() {
            "—".into()
        } else {
            format!(
                "{:.0}",
                self.delays.iter().sum::<usize>() as f64 / self.delays.len() as f64
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

struct Args {
    seeds: usize,
    quick: bool,
    kswin_seeds: Option<usize>,
    river: bool,
    /// The arguments as given (minus cargo's `--bench`), for the report.
    shown: Vec<String>,
}

const USAGE: &str =
    "usage: cargo bench --bench quality [-- [--seeds N] [--quick] [--kswin-seeds N] [--no-river]]
  --seeds N        seeds (streams) per scenario (default 20; 5 with --quick)
  --quick          5 seeds per scenario and a 30 s River budget instead of 120 s
  --kswin-seeds N  run River's KSWIN on the first N seeds (default: as many as fit the budget)
  --no-river       only our detectors
env: DRIFTWATCH_PYTHON  python with River 0.26.1 (default target/pyenv/bin/python)";

fn parse_args() -> Args {
    let mut args = Args {
        seeds: 0,
        quick: false,
        kswin_seeds: None,
        river: true,
        shown: Vec::new(),
    };
    let mut seeds = None;
    let mut it = std::env::args().skip(1);
    let number = |flag: &str, value: Option<String>| -> usize {
        match value.as_deref().map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => n,
            _ => {
                eprintln!("{flag} needs a positive integer\n{USAGE}");
                std::process::exit(2)
            }
        }
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            // cargo bench passes --bench to harness = false targets.
            "--bench" => continue,
            "--seeds" => {
                let n = number("--seeds", it.next());
                seeds = Some(n);
                args.shown.extend(["--seeds".into(), n.to_string()]);
                continue;
            }
            "--kswin-seeds" => {
                let n = number("--kswin-seeds", it.next());
                args.kswin_seeds = Some(n);
                args.shown.extend(["--kswin-seeds".into(), n.to_string()]);
                continue;
            }
            "--quick" => args.quick = true,
            "--no-river" => args.river = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                std::process::exit(2)
            }
        }
        args.shown.push(arg);
    }
    args.seeds = seeds.unwrap_or(if args.quick {
        QUICK_SEEDS
    } else {
        DEFAULT_SEEDS
    });
    args
}

// ---------------------------------------------------------------------------------------------
// River
// ---------------------------------------------------------------------------------------------

struct RiverRun {
    version: String,
    /// Per detector name: alarms per stream (None where the detector did not run).
    alarms: Vec<(String, Vec<Option<Vec<usize>>>)>,
    /// Per detector name: (seconds, events processed).
    timing: Vec<(String, f64, u64)>,
    kswin_seeds: usize,
    kswin_reason: String,
    wall: Duration,
}

enum RiverOutcome {
    Disabled,
    Skipped(String),
    Failed(String),
    Ran(RiverRun),
}

fn target_dir(manifest_dir: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                manifest_dir.join(p)
            }
        })
        .unwrap_or_else(|| manifest_dir.join("target"))
}

/// Writes all streams to `dir/streams.f64` (little-endian f64, stream after stream) and a
/// manifest `dir/streams.json`; returns the manifest's path.
fn write_streams(
    dir: &Path,
    streams: &[Stream],
    seeds: usize,
    kswin_seeds: Option<usize>,
    kswin_budget_s: f64,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut bytes = Vec::with_capacity(streams.len() * STREAM_LEN * 8);
    let mut entries = Vec::new();
    for (k, stream) in streams.iter().enumerate() {
        for v in &stream.values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        entries.push(json!({
            "index": k,
            "scenario": SCENARIOS[stream.scenario].name,
            "replica": stream.replica,
            "seed": stream.seed,
            "offset": k * STREAM_LEN,
        }));
    }
    std::fs::write(dir.join("streams.f64"), bytes)?;
    let manifest = json!({
        "format": "f64le",
        "data": "streams.f64",
        "stream_length": STREAM_LEN,
        "change_at": CHANGE_AT,
        "seeds_per_scenario": seeds,
        "scenarios": SCENARIOS.len(),
        "kswin_seeds": kswin_seeds,
        "kswin_budget_s": kswin_budget_s,
        "streams": entries,
    });
    let path = dir.join("streams.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    Ok(path)
}

fn run_river(manifest_dir: &Path, manifest: &Path, streams: usize) -> RiverOutcome {
    let (python, from_env) = match std::env::var_os("DRIFTWATCH_PYTHON") {
        Some(p) => (PathBuf::from(p), true),
        None => (manifest_dir.join("target/pyenv/bin/python"), false),
    };
    if !from_env && !python.exists() {
        return RiverOutcome::Skipped(format!(
            "River: skipped — create the venv with scripts/pyenv.sh ({} not found)",
            python.display()
        ));
    }
    let script = manifest_dir.join("benches/quality_river.py");
    let start = Instant::now();
    let output = Command::new(&python)
        .arg(&script)
        .arg(manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let wall = start.elapsed();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return RiverOutcome::Skipped(format!(
                "River: skipped — create the venv with scripts/pyenv.sh ({}: {e})",
                python.display()
            ))
        }
        Err(e) => {
            return RiverOutcome::Failed(format!(
                "River: failed to start {}: {e}",
                python.display()
            ))
        }
    };
    if !output.status.success() {
        return RiverOutcome::Failed(format!(
            "River: {} {} exited with {} (see stderr above)",
            python.display(),
            script.display(),
            output.status
        ));
    }
    match parse_river(&output.stdout, streams) {
        Ok(mut run) => {
            run.wall = wall;
            RiverOutcome::Ran(run)
        }
        Err(e) => RiverOutcome::Failed(format!(
            "River: unreadable output from {}: {e}",
            script.display()
        )),
    }
}

fn parse_river(stdout: &[u8], streams: usize) -> Result<RiverRun, String> {
    let v: Value = serde_json::from_slice(stdout).map_err(|e| e.to_string())?;
    let version = v["river_version"].as_str().unwrap_or("?").to_owned();
    let mut alarms = Vec::new();
    let mut timing = Vec::new();
    for name in ["adwin", "kswin", "page_hinkley"] {
        let per_stream = v["alarms"][name]
            .as_array()
            .ok_or(format!("no alarms for {name}"))?;
        if per_stream.len() != streams {
            return Err(format!(
                "{name}: {} streams, expected {streams}",
                per_stream.len()
            ));
        }
        let parsed = per_stream
            .iter()
            .map(|s| {
                s.as_array().map(|a| {
                    a.iter()
                        .map(|x| x.as_u64().unwrap_or(u64::MAX) as usize)
                        .collect()
                })
            })
            .collect();
        alarms.push((name.to_owned(), parsed));
        let t = &v["timing"][name];
        timing.push((
            name.to_owned(),
            t["seconds"]
                .as_f64()
                .ok_or(format!("no timing for {name}"))?,
            t["events"].as_u64().unwrap_or(0),
        ));
    }
    Ok(RiverRun {
        version,
        alarms,
        timing,
        kswin_seeds: v["kswin_seeds"].as_u64().unwrap_or(0) as usize,
        kswin_reason: v["kswin_reason"].as_str().unwrap_or("").to_owned(),
        wall: Duration::ZERO,
    })
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

struct Group {
    title: String,
    /// Alarms per stream (None: not run on that stream).
    alarms: Vec<Option<Vec<usize>>>,
    monitored_from: usize,
}

fn main() {
    let args = parse_args();
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let total_start = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    let seeds = args.seeds;
    let kswin_budget = if args.quick {
        QUICK_KSWIN_BUDGET_S
    } else {
        KSWIN_BUDGET_S
    };

    // Streams, scenario-major: index = scenario × seeds + k.
    let mut streams = Vec::with_capacity(SCENARIOS.len() * seeds);
    for (scenario, row) in SCENARIOS.iter().enumerate() {
        for replica in 0..seeds {
            let seed = SEED_STRIDE * scenario as u64 + replica as u64;
            streams.push(Stream {
                scenario,
                replica,
                seed,
                values: row.drift.generate(seed),
            });
        }
    }
    eprintln!(
        "quality: {} scenarios × {seeds} seeds = {} streams of {STREAM_LEN} events",
        SCENARIOS.len(),
        streams.len()
    );

    // Ours, one detector at a time so each timing is that detector alone (reference building,
    // binning and window maintenance included for PSI/KS).
    let mut ours_timing: Vec<(&str, Duration, u64)> = Vec::new();
    let mut ours: Vec<Vec<Vec<usize>>> = Vec::new();
    type Runner = fn(&[f64]) -> Vec<usize>;
    let runners: [(&str, Runner); 3] = [
        ("ADWIN", run_adwin),
        ("PSI", |s| run_windowed(s, WindowStat::Psi)),
        ("KS", |s| run_windowed(s, WindowStat::Ks)),
    ];
    for (name, run) in runners {
        let start = Instant::now();
        let alarms: Vec<Vec<usize>> = streams.iter().map(|s| run(&s.values)).collect();
        let elapsed = start.elapsed();
        eprintln!("quality: ours {name}: {:.3} s", elapsed.as_secs_f64());
        ours_timing.push((name, elapsed, (streams.len() * STREAM_LEN) as u64));
        ours.push(alarms);
    }
    let ours_elapsed = total_start.elapsed();

    // River, on the same streams, after ours (so the two never share the CPU).
    let river = if args.river {
        let dir = target_dir(&manifest_dir).join("quality");
        match write_streams(&dir, &streams, seeds, args.kswin_seeds, kswin_budget) {
            Ok(manifest) => {
                eprintln!(
                    "quality: streams written to {}; running River…",
                    dir.display()
                );
                run_river(&manifest_dir, &manifest, streams.len())
            }
            Err(e) => RiverOutcome::Failed(format!(
                "River: could not write streams to {}: {e}",
                dir.display()
            )),
        }
    } else {
        RiverOutcome::Disabled
    };

    // ADWIN cross-check.
    let mut adwin_check = None;
    if let RiverOutcome::Ran(run) = &river {
        let river_adwin = &run.alarms[0].1;
        let mismatched: Vec<String> = streams
            .iter()
            .enumerate()
            .filter(|(k, _)| river_adwin[*k].as_ref() != Some(&ours[0][*k]))
            .map(|(k, stream)| {
                format!(
                    "{} seed {}: ours {:?} vs River {:?}",
                    SCENARIOS[stream.scenario].name, stream.seed, ours[0][k], river_adwin[k]
                )
            })
            .collect();
        adwin_check = Some(mismatched);
    }
    let adwin_identical = adwin_check.as_ref().is_some_and(Vec::is_empty);

    let mut groups = vec![
        Group {
            title: if adwin_identical {
                "ADWIN (ours = River)".into()
            } else {
                "ADWIN (ours)".into()
            },
            alarms: ours[0].iter().cloned().map(Some).collect(),
            monitored_from: 0,
        },
        Group {
            title: "PSI (ours)".into(),
            alarms: ours[1].iter().cloned().map(Some).collect(),
            monitored_from: REFERENCE_LEN,
        },
        Group {
            title: "KS sketch (ours)".into(),
            alarms: ours[2].iter().cloned().map(Some).collect(),
            monitored_from: REFERENCE_LEN,
        },
    ];
    if let RiverOutcome::Ran(run) = &river {
        for (name, alarms) in &run.alarms {
            let title = match name.as_str() {
                "adwin" if adwin_identical => continue,
                "adwin" => "River ADWIN".to_owned(),
                "kswin" if run.kswin_seeds < seeds => format!(
                    "River KSWIN ({} seed{})",
                    run.kswin_seeds,
                    if run.kswin_seeds == 1 { "" } else { "s" }
                ),
                "kswin" => "River KSWIN".to_owned(),
                _ => "River PageHinkley".to_owned(),
            };
            groups.push(Group {
                title,
                alarms: alarms.clone(),
                monitored_from: 0,
            });
        }
    }

    // Figures: cells[group][scenario].
    let cells: Vec<Vec<Cell>> = groups
        .iter()
        .map(|g| {
            SCENARIOS
                .iter()
                .enumerate()
                .map(|(s, scenario)| {
                    let per_stream =
                        (s * seeds..(s + 1) * seeds).filter_map(|k| g.alarms[k].as_deref());
                    Cell::new(scenario.drift.drifts(), g.monitored_from, per_stream)
                })
                .collect()
        })
        .collect();
    // A detector that alarms on no-drift data more often than once per post-change span is
    // flagged: its TPR and delay then mostly measure false alarms after the change.
    let post_change = (STREAM_LEN - CHANGE_AT) as f64;
    let chance_gap: Vec<Option<f64>> = cells
        .iter()
        .map(|c| {
            let no_drift = &c[0];
            let rate = no_drift.false_alarms as f64 / no_drift.false_alarm_exposure.max(1) as f64;
            (rate * post_change >= 1.0).then(|| 1.0 / rate)
        })
        .collect();

    // The report.
    let mut out = String::new();
    let command = if args.shown.is_empty() {
        "cargo bench --bench quality".to_owned()
    } else {
        format!("cargo bench --bench quality -- {}", args.shown.join(" "))
    };
    let _ = writeln!(out, "\n### Detection quality\n");
    let _ = writeln!(out, "Command: `{command}`  ");
    let _ = writeln!(
        out,
        "Streams: {} scenarios × {seeds} seeds, {STREAM_LEN} events each, N(0,1) until the change at event {CHANGE_AT}, \
         event i at i × {EVENT_SPACING_MS} ms; seed k = 0..={} of row r = 0..={} (top to bottom) draws from \
         `StdRng::seed_from_u64({SEED_STRIDE}·r + k)`.  ",
        SCENARIOS.len(),
        seeds - 1,
        SCENARIOS.len() - 1,
    );
    match &river {
        RiverOutcome::Ran(run) if run.kswin_seeds < seeds => {
            let _ = writeln!(
                out,
                "River {}: ADWIN and PageHinkley on every stream; KSWIN only on seeds k = 0..={} \
                 ({} of {seeds} per scenario: {}{}).",
                run.version,
                run.kswin_seeds.saturating_sub(1),
                run.kswin_seeds,
                run.kswin_reason,
                if args.kswin_seeds.is_some() {
                    String::new()
                } else {
                    format!("; reproduce with `--kswin-seeds {}`", run.kswin_seeds)
                }
            );
        }
        RiverOutcome::Ran(run) => {
            let _ = writeln!(
                out,
                "River {}: every detector on every stream (KSWIN: {}).",
                run.version, run.kswin_reason
            );
        }
        RiverOutcome::Disabled => {
            let _ = writeln!(out, "River: not run (--no-river).");
        }
        RiverOutcome::Skipped(msg) | RiverOutcome::Failed(msg) => {
            let _ = writeln!(out, "{msg}");
        }
    }
    let _ = writeln!(out);

    let mut header = String::from("| scenario |");
    let mut rule = String::from("|---|");
    for (g, gap) in groups.iter().zip(&chance_gap) {
        let title = format!("{}{}", g.title, if gap.is_some() { " †" } else { "" });
        let _ = write!(header, " {title} TPR | {title} FA/1M | {title} delay |");
        rule.push_str("---:|---:|---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        let drifts = scenario.drift.drifts();
        let _ = write!(out, "| {} |", scenario.name);
        for group_cells in &cells {
            let cell = &group_cells[s];
            let _ = write!(
                out,
                " {} | {} | {} |",
                cell.tpr(drifts),
                cell.false_alarms_per_million(),
                cell.mean_delay(drifts)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\nTPR: drifting streams with ≥ 1 alarm at or after event {CHANGE_AT}. \
         FA/1M: alarms before the change (anywhere without drift) per million events in which an alarm would be false; \
         for PSI/KS only events after the {REFERENCE_LEN}-event reference count (they judge nothing earlier). \
         Delay: mean over detected streams of (first alarm at/after the change − {CHANGE_AT}), in events; \
         gradual drifts are timed from the start of the ramp. \
         ADWIN: River defaults (δ=0.002, clock 32), every detection is an alarm. \
         PSI/KS: reference = first {REFERENCE_LEN} events ({COARSE_BINS} bins, refinement {REFINEMENT}); \
         {WINDOW_PANES} × 1-min panes (600 events each), evaluated at each pane close once the window holds ≥ {MIN_WINDOW_EVENTS} events; \
         breach at PSI ≥ {PSI_THRESHOLD} / KS p < {KS_P_THRESHOLD}; alarm = OK→FIRING after {POLICY_K} consecutive breaches \
         (FIRING→OK after {POLICY_K} clean evaluations), at the event that closed the pane, so their delay is at least 800 events \
         (pane granularity + the 2-breach rule). \
         KSWIN: alpha=0.005, window_size=100, stat_size=30, seed=<stream seed>; PageHinkley: River defaults."
    );
    let flagged: Vec<String> = groups
        .iter()
        .zip(&chance_gap)
        .filter_map(|(g, gap)| gap.map(|gap| format!("{} (one every ~{gap:.0} events)", g.title)))
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(
            out,
            "\n† Alarms on no-drift data more often than once per {} events: {}. For these, TPR and delay \
             after the change largely count false alarms, not detections.",
            STREAM_LEN - CHANGE_AT,
            flagged.join(", ")
        );
    }

    // Timing.
    let _ = writeln!(
        out,
        "\nWall time (each detector alone over all its streams, one thread):\n"
    );
    let _ = writeln!(
        out,
        "| detector | ours | ours ns/event | River | River ns/event |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let river_time = |name: &str| match &river {
        RiverOutcome::Ran(run) => run
            .timing
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, e)| (*s, *e)),
        _ => None,
    };
    let fmt_time = |t: Option<(f64, u64)>| match t {
        Some((s, e)) if e > 0 => (format!("{s:.3} s"), format!("{:.0}", s * 1e9 / e as f64)),
        _ => ("—".into(), "—".into()),
    };
    let ours_row = |k: usize| {
        let (_, d, e) = ours_timing[k];
        Some((d.as_secs_f64(), e))
    };
    for (label, ours_t, river_t) in [
        ("ADWIN", ours_row(0), river_time("adwin")),
        ("PSI (windows + PSI)", ours_row(1), None),
        ("KS (windows + sketch KS)", ours_row(2), None),
        ("KSWIN", None, river_time("kswin")),
        ("PageHinkley", None, river_time("page_hinkley")),
    ] {
        let (os, on) = fmt_time(ours_t);
        let (rs, rn) = fmt_time(river_t);
        let _ = writeln!(out, "| {label} | {os} | {on} | {rs} | {rn} |");
    }
    let _ = writeln!(out);
    match (&river, &adwin_check) {
        (RiverOutcome::Ran(run), Some(mismatched)) => {
            if mismatched.is_empty() {
                let _ = writeln!(
                    out,
                    "ADWIN cross-check: our alarms equal River {}'s on every stream ({} of {}).  ",
                    run.version,
                    streams.len(),
                    streams.len()
                );
            } else {
                let _ = writeln!(
                    out,
                    "ADWIN cross-check: MISMATCH with River {} on {} of {} streams, e.g. {}  ",
                    run.version,
                    mismatched.len(),
                    streams.len(),
                    mismatched
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
        _ => {
            let _ = writeln!(out, "ADWIN cross-check: not done (River did not run).  ");
        }
    }
    let river_wall = match &river {
        RiverOutcome::Ran(run) => {
            format!(", River {:.1} s (python process)", run.wall.as_secs_f64())
        }
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "Run time: ours {:.2} s{river_wall}, total {:.1} s; {} CPUs, 1-min load average {} at start.",
        ours_elapsed.as_secs_f64(),
        total_start.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_at_start.as_deref().unwrap_or("?")
    );
    print!("{out}");
}
