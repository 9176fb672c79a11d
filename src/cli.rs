//! Command-line surface (DESIGN §7, contract): clap definitions only; `main.rs` dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::detect::adwin::AdwinParams;
use crate::telemetry::LogFormat;

/// Arguments of commands that read the service configuration.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML); see config/driftwatch.example.toml.
    #[arg(long)]
    pub config: PathBuf,
}

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Prediction events to produce (two models, alternating).
    #[arg(long, default_value_t = 120_000)]
    pub events: u64,
    /// Index of the first drifted event (default: half of --events).
    #[arg(long)]
    pub drift_at: Option<u64>,
    /// Random seed of the synthetic traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print one machine-readable JSON summary on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Streaming drift detection for ML models on a Kafka event bus.
#[derive(Debug, Parser)]
#[command(name = "driftwatch", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: consume inference events from Kafka, publish alerts and retrain
    /// requests, serve metrics and the HTTP API.
    Run(ConfigArgs),
    /// Validate a configuration file and print every problem.
    CheckConfig(ConfigArgs),
    /// The embedded demo: an in-process Kafka mock, synthetic traffic with injected drift,
    /// the real service loop, live alerts.
    Demo(DemoArgs),
    /// Run a detector over a stream of numbers, offline (tuning, audits).
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Compare a reference sample with a current one: PSI, JS, KS, Wasserstein or chi².
    Compare(CompareArgs),
}

/// Detectors `eval` can run.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// ADWIN over one number per input line; prints one JSON object per detection.
    Adwin(EvalAdwinArgs),
}

/// Arguments of `eval adwin`; the defaults are River 0.26.1's.
#[derive(Debug, Args)]
pub struct EvalAdwinArgs {
    /// Significance value of the cut test, in (0, 1).
    #[arg(long, default_value_t = 0.002)]
    pub delta: f64,
    /// Run the cut test every this many updates.
    #[arg(long, default_value_t = 32)]
    pub clock: u32,
    /// Buckets of one size kept before merging.
    #[arg(long, default_value_t = 5)]
    pub max_buckets: u32,
    /// Minimum length of each compared sub-window.
    #[arg(long, default_value_t = 5)]
    pub min_window_length: u32,
    /// No detection until the window holds more than this many elements.
    #[arg(long, default_value_t = 10)]
    pub grace_period: u32,
    /// Input file with one number per line, or `-` for standard input.
    #[arg(long)]
    pub input: PathBuf,
}

impl EvalAdwinArgs {
    /// The detector parameters these arguments describe.
    pub fn params(&self) -> AdwinParams {
        AdwinParams {
            delta: self.delta,
            clock: self.clock,
            max_buckets: self.max_buckets,
            min_window_length: self.min_window_length,
            grace_period: self.grace_period,
        }
    }
}

/// Arguments of `compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Reference sample: one value (or category label) per line.
    #[arg(long)]
    pub reference: PathBuf,
    /// Current sample: one value (or category label) per line.
    #[arg(long)]
    pub current: PathBuf,
    /// Number of reference quantile bins for numeric data.
    #[arg(long, default_value_t = 10)]
    pub bins: usize,
    /// Treat lines as category labels (PSI, JS and chi² over categories plus `__other__`).
    #[arg(long)]
    pub categorical: bool,
}
