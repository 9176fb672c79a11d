//! The `driftwatch` binary: parse the command line, set up logging, dispatch, and map failures
//! to exit codes (0 ok, 2 usage/config/input error, 1 runtime failure).

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Parser;
use driftwatch::bus::service::{self, NoObserver, Shared};
use driftwatch::cli::{BaselineArgs, Cli, Command, ConfigArgs, DemoArgs, EvalCommand, ReplayArgs};
use driftwatch::config::{self, Config};
use driftwatch::demo::{self, DemoOptions};
use driftwatch::telemetry::{init_tracing, Metrics};
use driftwatch::tools::compare::compare;
use driftwatch::tools::eval::{eval_adwin, EvalError};
use tracing::{error, info};

/// Usage, configuration or input problem (clap uses the same code for usage errors).
const EXIT_USAGE: u8 = 2;
/// Failure while running.
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Eval(EvalCommand::Adwin(args)) => {
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            match eval_adwin(&args, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error @ EvalError::Output(_)) => fail(&error, EXIT_RUNTIME),
                Err(error) => {
                    let _ = out.flush();
                    fail(&error, EXIT_USAGE)
                }
            }
        }
        Command::Compare(args) => match compare(&args) {
            Ok(report) => print_json(&report),
            Err(error) => fail(&error, EXIT_USAGE),
        },
        Command::CheckConfig(args) => match load(&args) {
            Ok(_) => {
                println!("{}: ok", args.config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run(args) => match load(&args) {
            Ok(config) => run_service(&config),
            Err(code) => code,
        },
        Command::Demo(args) => run_demo(&args),
        Command::Replay(args) => run_replay(&args),
        Command::Baseline(args) => run_baseline(&args),
    }
}

/// The `[monitor]` settings of an optional configuration file (defaults without one).
fn monitor_settings(
    path: Option<&std::path::PathBuf>,
) -> Result<driftwatch::monitor::settings::MonitorSettings, ExitCode> {
    match path {
        Some(path) => load(&ConfigArgs {
            config: path.clone(),
        })
        .map(|config| config.monitor),
        None => Ok(Default::default()),
    }
}

fn run_baseline(args: &BaselineArgs) -> ExitCode {
    let settings = match monitor_settings(args.config.as_ref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let options = driftwatch::baseline::BaselineOptions {
        input: args.input.clone(),
        model_id: args.model_id.clone(),
        model_version: args.model_version.clone(),
        score_column: args.score_column.clone(),
        prediction_column: args.prediction_column.clone(),
        label_column: args.label_column.clone(),
        max_rows: args.max_rows,
        seed: args.seed,
    };
    // A byte-based bar: the input's size is known up front, its row count is not.
    let size = std::fs::metadata(&args.input).map(|m| m.len()).unwrap_or(0);
    let bar = if io::stderr().is_terminal() && size > 0 {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} reading {bytes}/{total_bytes} [{bar:30}] {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let built =
        driftwatch::baseline::build(&options, &settings, &mut |bytes| bar.set_position(bytes));
    bar.finish_and_clear();
    let baseline = match built {
        Ok(baseline) => baseline,
        Err(error) => return fail(&error, EXIT_USAGE),
    };
    if let Err(error) = driftwatch::baseline::write(&baseline, &args.out) {
        return fail(&error, EXIT_RUNTIME);
    }
    eprintln!(
        "driftwatch baseline: {} rows ({} in the reference, {} labelled), {} features -> {}",
        baseline.rows,
        baseline.sampled_rows,
        baseline.labelled_rows,
        baseline.state.features.len(),
        args.out.display()
    );
    ExitCode::SUCCESS
}

fn run_replay(args: &ReplayArgs) -> ExitCode {
    let settings = match monitor_settings(args.config.as_ref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let outcome = match driftwatch::replay::replay(
        settings,
        &args.input,
        &mut out,
        !args.summary,
        args.report.is_some(),
    ) {
        Ok(outcome) => outcome,
        Err(error @ driftwatch::replay::ReplayError::Output(_)) => {
            return fail(&error, EXIT_RUNTIME)
        }
        Err(error) => return fail(&error, EXIT_USAGE),
    };
    if args.summary {
        for summary in &outcome.summaries {
            let written = serde_json::to_string(summary)
                .map_err(io::Error::other)
                .and_then(|json| writeln!(out, "{json}"));
            if let Err(error) = written {
                return fail(&error, EXIT_RUNTIME);
            }
        }
    }
    if let Err(error) = out.flush() {
        return fail(&error, EXIT_RUNTIME);
    }
    if let (Some(path), Some(report)) = (&args.report, &outcome.report) {
        let html = driftwatch::report::render_html(report);
        if let Err(error) = std::fs::write(path, html) {
            return fail(&format!("{}: {error}", path.display()), EXIT_RUNTIME);
        }
    }
    let counts = outcome.counts;
    info!(
        message = "Replay finished.",
        records = counts.records,
        predictions = counts.predictions,
        labels = counts.labels,
        late = counts.late,
        too_far_ahead = counts.too_far_ahead,
        malformed = counts.malformed,
        alerts = counts.alerts,
        retrain_requests = counts.retrain_requests
    );
    ExitCode::SUCCESS
}

fn load(args: &ConfigArgs) -> Result<Config, ExitCode> {
    config::load(&args.config).map_err(|error| {
        eprintln!(
            "driftwatch: {} has {} problem(s):",
            args.config.display(),
            error.problems.len()
        );
        for problem in &error.problems {
            eprintln!("  - {problem}");
        }
        ExitCode::from(EXIT_USAGE)
    })
}

fn run_service(config: &Config) -> ExitCode {
    let metrics = match Metrics::new(
        config.metrics.per_feature_gauges,
        config.metrics.max_feature_series,
    ) {
        Ok(metrics) => metrics,
        Err(error) => return fail(&error, EXIT_RUNTIME),
    };
    let shared = Arc::new(Shared::new(metrics));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error, EXIT_RUNTIME),
    };
    // Signals and HTTP live on the runtime; the service loop has its own thread.
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = if config.http.enabled {
        let listener = match runtime.block_on(tokio::net::TcpListener::bind(config.http.listen)) {
            Ok(listener) => listener,
            Err(error) => {
                return fail(
                    &format!("cannot listen on {}: {error}", config.http.listen),
                    EXIT_RUNTIME,
                )
            }
        };
        info!(message = "HTTP listening.", address = %config.http.listen);
        Some(runtime.spawn(driftwatch::http::serve(
            listener,
            shared.clone(),
            config.http.bearer_token.clone(),
            async {
                let _ = http_stopped.await;
            },
        )))
    } else {
        None
    };
    {
        let shared = shared.clone();
        runtime.spawn(async move {
            wait_for_signal().await;
            info!(message = "Shutdown requested; flushing outputs and committing offsets.");
            shared.shutdown.store(true, Ordering::Release);
        });
    }
    let result = {
        let (config, shared) = (config.clone(), shared.clone());
        std::thread::Builder::new()
            .name("driftwatch-service".into())
            .spawn(move || service::run(&config, shared, &mut NoObserver))
            .map_err(|e| e.to_string())
            .and_then(|t| {
                t.join()
                    .map_err(|_| "the service thread panicked".to_owned())
            })
    };
    let _ = stop_http.send(());
    if let Some(http) = http {
        let _ = runtime.block_on(http);
    }
    match result {
        Ok(Ok(summary)) => {
            info!(
                message = "Stopped.",
                consumed = summary.consumed,
                outputs = summary.outputs,
                dead_letters = summary.dead_letters
            );
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            error!(message = "Service failed.", %error);
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(error) => fail(&error, EXIT_RUNTIME),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn run_demo(args: &DemoArgs) -> ExitCode {
    let options = DemoOptions {
        events: args.events,
        drift_at: args.drift_at.unwrap_or(args.events / 2),
        seed: args.seed,
        live: io::stderr().is_terminal() || !args.json,
    };
    if !args.json {
        eprintln!(
            "driftwatch demo: {} events for 2 models on an in-process Kafka mock; drift injected at event {}.",
            options.events, options.drift_at
        );
    }
    match demo::run(&options) {
        Ok(summary) => {
            if args.json {
                return print_json(&summary);
            }
            println!();
            println!("events produced:   {}", summary.events_produced);
            println!("events processed:  {}", summary.events_processed);
            println!(
                "dead letters:      {} (malformed messages injected on purpose)",
                summary.dead_letters
            );
            println!("alert transitions: {}", summary.alerts.len());
            println!("retrain requests:  {}", summary.retrain_requests.len());
            for line in demo::verdict(&summary) {
                println!("{line}");
            }
            println!("elapsed:           {:.1} s", summary.elapsed_seconds);
            ExitCode::SUCCESS
        }
        Err(error) => fail(&format!("{error:#}"), EXIT_RUNTIME),
    }
}

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    match serde_json::to_string(value) {
        Ok(json) => match writeln!(io::stdout().lock(), "{json}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error, EXIT_RUNTIME),
        },
        Err(error) => fail(&error, EXIT_RUNTIME),
    }
}

fn fail(error: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("driftwatch: error: {error}");
    ExitCode::from(code)
}
