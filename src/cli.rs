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
    /// Run the monitor over recorded events, a JSON Lines file (predictions and labels, each
    /// with `"kind"`) or an Avro object container file: alerts and retrain requests as JSON
    /// lines on stdout, exactly as live.
    Replay(ReplayArgs),
    /// Build a reference profile of a model from its training data (CSV or JSON Lines);
    /// `run` and `replay` use it instead of a warm-up (`[[monitor.models]] baseline`).
    Baseline(BaselineArgs),
}

/// Arguments of `baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Training data: `.csv` with a header (one column per feature), or JSON Lines or an Avro
    /// object container file of prediction events (label events in the same file give the
    /// reference quality).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the baseline (JSON).
    #[arg(long)]
    pub out: PathBuf,
    /// Model id (required for CSV; JSON Lines take it from the events).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Model version recorded in the file.
    #[arg(long)]
    pub model_version: Option<String>,
    /// CSV column with the model's score (not a feature).
    #[arg(long)]
    pub score_column: Option<String>,
    /// CSV column with the predicted class (not a feature).
    #[arg(long)]
    pub prediction_column: Option<String>,
    /// CSV column with the true label (not a feature; gives the reference quality).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Rows kept for the reference; larger inputs are sampled uniformly (seeded).
    #[arg(long, default_value_t = 50_000)]
    pub max_rows: usize,
    /// Seed of that sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Configuration file whose `[monitor.reference]` settings (bins, categories) to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Configuration file (its `[monitor]` section is used; defaults without one).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Recorded events, or `-` for standard input: JSON Lines (one event object per line), or
    /// an Avro object container file (null, deflate or snappy codec) whose schema driftwatch's
    /// PredictionEvent or LabelEvent schema can read, or a union of the two. Told apart by
    /// the first bytes.
    #[arg(long)]
    pub input: PathBuf,
    /// Write an HTML report with drift scores and quality over time (inline SVG).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print one drift-report object per model version instead of the outputs
    /// (schemas/drift_summary.schema.json).
    #[arg(long)]
    pub summary: bool,
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
    /// Buckets of one size kept before merging (at least 2).
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
