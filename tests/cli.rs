//! End-to-end tests of the `driftwatch` binary: `eval adwin`, `compare`, `check-config`,
//! `demo --json` and `--help`, run as a user would run them (exit codes, stdout, stderr).
//!
//! Reference numbers come from River 0.26.1, SciPy 1.17.1 and NumPy 2.4.6 (the venv made by
//! `scripts/pyenv.sh`, `target/pyenv/bin/python`); each block says how it was computed.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

// ─── Harness ──────────────────────────────────────────────────────────────────────────────

/// The binary, with an environment that cannot change its behaviour: no inherited
/// `DRIFTWATCH_*` overrides, no `RUST_LOG`.
fn driftwatch() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.starts_with("DRIFTWATCH_") || upper == "RUST_LOG" {
            command.env_remove(&name);
        }
    }
    command
}

/// Runs `driftwatch args...` with `stdin` (empty when `None`).
fn run_with(command: &mut Command, args: &[&str], stdin: Option<&[u8]>) -> Output {
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("cannot start driftwatch");
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        if let Some(bytes) = stdin {
            input
                .write_all(bytes)
                .expect("cannot write to driftwatch's stdin");
        }
    }
    child
        .wait_with_output()
        .expect("cannot wait for driftwatch")
}

fn run(args: &[&str]) -> Output {
    run_with(&mut driftwatch(), args, None)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts the exit code, showing both streams when it differs.
#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// A file under the system temp directory with a name no other test (or run) uses; removed
/// on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "driftwatch-cli-{}-{nanos}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("cannot write a temp file");
        Self(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `actual` equals `expected` to 1e-12 relative (absolute near 0).
#[track_caller]
fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-12 * expected.abs().max(f64::MIN_POSITIVE);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual:?}, expected {expected:?} (tolerance {tolerance:e})"
    );
}

#[track_caller]
fn as_f64(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {value}"))
}

#[track_caller]
fn assert_close_all(actual: &Value, expected: &[f64], what: &str) {
    let actual = actual
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {actual}"));
    assert_eq!(actual.len(), expected.len(), "{what}: length of {actual:?}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_close(as_f64(a, what), *e, &format!("{what}[{i}]"));
    }
}

#[track_caller]
fn u64_array(value: &Value, what: &str) -> Vec<u64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {value}"))
        .iter()
        .map(|v| {
            v.as_u64()
                .unwrap_or_else(|| panic!("{what}: not a count: {v}"))
        })
        .collect()
}

/// Keys of a JSON object, sorted.
#[track_caller]
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// stdout must be exactly one line holding one JSON object; returns it.
#[track_caller]
fn single_json_object(output: &Output) -> Value {
    let text = stdout(output);
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "stdout is not exactly one line: {text:?}"
    );
    let value: Value = serde_json::from_str(text.trim_end())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text:?}"));
    assert!(value.is_object(), "stdout is not a JSON object: {text}");
    value
}

// ─── eval adwin ───────────────────────────────────────────────────────────────────────────

/// River's ADWIN docstring stream (`tests/fixtures/river_docstring_stream.txt`), made with
/// `rng = random.Random(12345); rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)`.
/// River documents "Change detected at index 1023"; width and estimation are River's
/// `ADWIN().width` / `.estimation` right after that update.
const RIVER_DOCSTRING_DETECTION: &str = "{\"index\":1023,\"width\":32,\"estimation\":4.5}\n";

fn river_stream() -> String {
    fixture("river_docstring_stream.txt")
}

#[test]
fn fixture_is_rivers_docstring_stream() {
    let text = std::fs::read_to_string(river_stream()).unwrap();
    let values: Vec<u32> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(values.len(), 2000);
    assert!(values[..1000].iter().all(|v| *v <= 1));
    assert!(values[1000..].iter().all(|v| (4..=7).contains(v)));
    // Python: first values, the sum of each half and the last values of the stream.
    assert_eq!(values[..12], [0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0]);
    assert_eq!(values[..1000].iter().sum::<u32>(), 497);
    assert_eq!(values[1000..].iter().sum::<u32>(), 5473);
    assert_eq!(values[1995..], [4, 6, 6, 7, 7]);
}

#[test]
fn eval_adwin_detects_the_river_docstring_change_at_1023() {
    let output = run(&["eval", "adwin", "--input", &river_stream()]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), RIVER_DOCSTRING_DETECTION);
    assert_eq!(stderr(&output), "");
}

#[test]
fn eval_adwin_reads_standard_input() {
    let stream = std::fs::read(river_stream()).unwrap();
    let output = run_with(
        &mut driftwatch(),
        &["eval", "adwin", "--input", "-"],
        Some(&stream),
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), RIVER_DOCSTRING_DETECTION);
    assert_eq!(stderr(&output), "");
}

/// Detections `(index, width, estimation)` printed by `eval adwin` with `flags`.
fn adwin_detections(flags: &[&str]) -> Vec<(u64, u64, f64)> {
    let input = river_stream();
    let mut args = vec!["eval", "adwin"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--input", &input]);
    let output = run(&args);
    assert_exit(&output, 0);
    assert_eq!(stderr(&output), "", "flags {flags:?}");
    stdout(&output)
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            assert_eq!(keys(&value), ["estimation", "index", "width"], "{line}");
            (
                value["index"].as_u64().unwrap(),
                value["width"].as_u64().unwrap(),
                value["estimation"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn eval_adwin_parameters_match_river() {
    // Expected values from River 0.26.1 on the same stream:
    //   a = river.drift.ADWIN(**params)
    //   for i, x in enumerate(stream):
    //       a.update(x)
    //       if a.drift_detected: print(i, a.width, a.estimation)
    #[allow(clippy::type_complexity)]
    let cases: &[(&[&str], &[(u64, u64, f64)])] = &[
        // ADWIN(clock=1)
        (&["--clock", "1"], &[(1002, 555, 0.5369369369369369)]),
        // ADWIN(delta=0.5)
        (&["--delta", "0.5"], &[(1023, 28, 5.0)]),
        // ADWIN(delta=1e-6)
        (&["--delta", "1e-6"], &[(1023, 56, 2.7857142857142856)]),
        // ADWIN(clock=1, delta=0.5)
        (
            &["--clock", "1", "--delta", "0.5"],
            &[
                (1001, 74, 0.6756756756756757),
                (1450, 385, 5.496103896103896),
                (1576, 110, 5.554545454545455),
            ],
        ),
        // ADWIN(clock=1, max_buckets=2)
        (
            &["--clock", "1", "--max-buckets", "2"],
            &[(1002, 491, 0.5336048879837068)],
        ),
        // ADWIN(clock=8, grace_period=100, min_window_length=20)
        (
            &[
                "--clock",
                "8",
                "--grace-period",
                "100",
                "--min-window-length",
                "20",
            ],
            &[(1007, 432, 0.6157407407407407)],
        ),
    ];
    for (flags, expected) in cases {
        let actual = adwin_detections(flags);
        assert_eq!(actual.len(), expected.len(), "{flags:?}: {actual:?}");
        for ((index, width, estimation), (e_index, e_width, e_estimation)) in
            actual.iter().zip(expected.iter())
        {
            assert_eq!((index, width), (e_index, e_width), "{flags:?}: {actual:?}");
            assert_close(*estimation, *e_estimation, &format!("{flags:?} estimation"));
        }
    }
    // Testing every update cannot detect later than testing every 32nd.
    let every_update = adwin_detections(&["--clock", "1"]);
    assert!(every_update[0].0 <= 1023, "{every_update:?}");
    assert_ne!(every_update[0].0, 1023, "--clock had no effect");
}

#[test]
fn eval_adwin_rejects_a_non_numeric_line_naming_file_line_and_value() {
    // Line 2 is blank (skipped, but counted), line 4 is the bad one.
    let file = TempFile::new("bad.txt", b"0.5\n\n1\n  abc  \n2\n");
    let output = run(&["eval", "adwin", "--input", file.arg()]);
    assert_exit(&output, 2);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "driftwatch: error: {}:4: not a number: \"abc\"\n",
            file.arg()
        )
    );
}

#[test]
fn eval_adwin_rejects_non_finite_values() {
    for (bad, line) in [("nan", 2), ("inf", 2), ("-inf", 2), ("1e400", 2)] {
        let file = TempFile::new("nonfinite.txt", format!("1\n{bad}\n3\n").as_bytes());
        let output = run(&["eval", "adwin", "--input", file.arg()]);
        assert_exit(&output, 2);
        assert_eq!(
            stderr(&output),
            format!(
                "driftwatch: error: {}:{line}: not a number: \"{bad}\"\n",
                file.arg()
            )
        );
    }
}

#[test]
fn eval_adwin_keeps_detections_printed_before_a_bad_line() {
    let mut stream = std::fs::read(river_stream()).unwrap();
    stream.extend_from_slice(b"oops\n");
    let file = TempFile::new("late-bad.txt", &stream);
    let output = run(&["eval", "adwin", "--input", file.arg()]);
    assert_exit(&output, 2);
    assert_eq!(stdout(&output), RIVER_DOCSTRING_DETECTION);
    assert_eq!(
        stderr(&output),
        format!(
            "driftwatch: error: {}:2001: not a number: \"oops\"\n",
            file.arg()
        )
    );
}

#[test]
fn eval_adwin_names_stdin_as_dash_in_errors() {
    let output = run_with(
        &mut driftwatch(),
        &["eval", "adwin", "--input", "-"],
        Some(b"1\nx\n"),
    );
    assert_exit(&output, 2);
    assert_eq!(
        stderr(&output),
        "driftwatch: error: -:2: not a number: \"x\"\n"
    );
}

#[test]
fn eval_adwin_on_an_empty_file_prints_nothing() {
    for contents in [&b""[..], b"\n\n  \n"] {
        let file = TempFile::new("empty.txt", contents);
        let output = run(&["eval", "adwin", "--input", file.arg()]);
        assert_exit(&output, 0);
        assert_eq!(stdout(&output), "");
        assert_eq!(stderr(&output), "");
    }
}

#[test]
fn eval_adwin_on_a_missing_file_names_the_path() {
    let missing = std::env::temp_dir().join(format!(
        "driftwatch-cli-{}-does-not-exist.txt",
        std::process::id()
    ));
    let missing = missing.to_str().unwrap();
    let output = run(&["eval", "adwin", "--input", missing]);
    assert_exit(&output, 2);
    assert_eq!(stdout(&output), "");
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("driftwatch: error: {missing}: ")),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
}

#[test]
fn eval_adwin_rejects_invalid_parameters() {
    let input = river_stream();
    let cases: &[(&[&str], &str)] = &[
        (&["--delta", "0"], "adwin delta must be in (0, 1), got 0"),
        (&["--delta", "1"], "adwin delta must be in (0, 1), got 1"),
        (&["--delta=-0.5"], "adwin delta must be in (0, 1), got -0.5"),
        (&["--delta", "NaN"], "adwin delta must be in (0, 1), got NaN"),
        (&["--clock", "0"], "adwin clock must be >= 1"),
        (&["--max-buckets", "0"], "adwin max_buckets must be >= 2, got 0"),
        (&["--max-buckets", "1"], "adwin max_buckets must be >= 2, got 1"),
        (
            &["--delta", "0", "--clock", "0", "--max-buckets", "0"],
            "adwin delta must be in (0, 1), got 0; adwin clock must be >= 1; adwin max_buckets must be >= 2, got 0",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["eval", "adwin"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--input", &input]);
        let output = run(&args);
        assert_exit(&output, 2);
        assert_eq!(stdout(&output), "", "{flags:?}");
        assert_eq!(
            stderr(&output),
            format!("driftwatch: error: invalid ADWIN parameters: {message}\n"),
            "{flags:?}"
        );
    }
    // Values clap itself rejects, and a missing --input: usage errors, exit 2 too.
    for flags in [
        &["--delta", "abc", "--input", &input][..],
        &["--clock", "-1", "--input", &input],
        &["--max-buckets", "1.5", "--input", &input],
        &[],
    ] {
        let mut args = vec!["eval", "adwin"];
        args.extend_from_slice(flags);
        let output = run(&args);
        assert_exit(&output, 2);
        assert_eq!(stdout(&output), "", "{flags:?}");
        let err = stderr(&output);
        assert!(err.starts_with("error: "), "{flags:?}: {err}");
        assert!(err.contains("--help"), "{flags:?}: {err}");
    }
}

// ─── compare ──────────────────────────────────────────────────────────────────────────────

const NUMERIC_KEYS: [&str; 12] = [
    "current_count",
    "current_counts",
    "current_missing",
    "edges",
    "js",
    "kind",
    "ks",
    "psi",
    "reference_count",
    "reference_counts",
    "reference_missing",
    "wasserstein",
];

/// What SciPy/NumPy say about one numeric comparison.
struct NumericExpected<'a> {
    counts: (u64, u64),
    missing: (u64, u64),
    edges: &'a [f64],
    reference_counts: &'a [u64],
    current_counts: &'a [u64],
    psi: f64,
    js: f64,
    ks_statistic: f64,
    ks_p_value: f64,
    ks_method: &'a str,
    wasserstein: f64,
}

#[track_caller]
fn check_numeric(report: &Value, bins: usize, e: &NumericExpected) {
    assert_eq!(keys(report), NUMERIC_KEYS, "{report}");
    assert_eq!(report["kind"], "numeric");
    assert_eq!(report["reference_count"].as_u64(), Some(e.counts.0));
    assert_eq!(report["current_count"].as_u64(), Some(e.counts.1));
    assert_eq!(report["reference_missing"].as_u64(), Some(e.missing.0));
    assert_eq!(report["current_missing"].as_u64(), Some(e.missing.1));
    assert_eq!(e.edges.len(), bins - 1);
    assert_close_all(&report["edges"], e.edges, "edges");
    let reference_counts = u64_array(&report["reference_counts"], "reference_counts");
    let current_counts = u64_array(&report["current_counts"], "current_counts");
    assert_eq!(reference_counts, e.reference_counts);
    assert_eq!(current_counts, e.current_counts);
    assert_eq!(reference_counts.iter().sum::<u64>(), e.counts.0);
    assert_eq!(current_counts.iter().sum::<u64>(), e.counts.1);
    assert_close(as_f64(&report["psi"], "psi"), e.psi, "psi");
    assert_close(as_f64(&report["js"], "js"), e.js, "js");
    let ks = &report["ks"];
    assert_eq!(keys(ks), ["method", "p_value", "statistic"], "{ks}");
    assert_close(
        as_f64(&ks["statistic"], "ks.statistic"),
        e.ks_statistic,
        "ks.statistic",
    );
    assert_close(
        as_f64(&ks["p_value"], "ks.p_value"),
        e.ks_p_value,
        "ks.p_value",
    );
    assert_eq!(ks["method"], e.ks_method);
    assert_close(
        as_f64(&report["wasserstein"], "wasserstein"),
        e.wasserstein,
        "wasserstein",
    );
}

// The numeric fixtures were made with NumPy:
//   rng = np.random.default_rng(2024)
//   compare_reference.txt: np.round(rng.normal(0, 1, 300), 1), one repr per line
//   compare_current.txt:   np.round(rng.normal(0.4, 1.3, 200), 1), with a blank line before
//                          value 50 and a "nan" line before value 100
// Expected values: read the files as driftwatch does (blank lines skipped, non-finite values
// left out and counted), then
//   edges = np.quantile(ref, np.arange(1, B) / B, method="linear")
//   counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=B)
//   psi: proportions with 0 replaced by 1e-4, sum((c - r) * log(c / r))
//   js = scipy.spatial.distance.jensenshannon(ref_counts, cur_counts, base=2)
//   ks = scipy.stats.ks_2samp(ref, cur)            (method "auto": exact here)
//   wasserstein = scipy.stats.wasserstein_distance(ref, cur)

#[test]
fn compare_numeric_matches_scipy_with_default_bins() {
    let output = run(&[
        "compare",
        "--reference",
        &fixture("compare_reference.txt"),
        "--current",
        &fixture("compare_current.txt"),
    ]);
    assert_exit(&output, 0);
    assert_eq!(stderr(&output), "");
    check_numeric(
        &single_json_object(&output),
        10,
        &NumericExpected {
            counts: (300, 200),
            missing: (0, 1),
            edges: &[-1.3, -0.8, -0.5, -0.2, 0.0, 0.2, 0.5, 0.8, 1.2],
            reference_counts: &[27, 23, 32, 31, 25, 32, 37, 27, 31, 35],
            current_counts: &[19, 18, 8, 15, 15, 13, 18, 19, 15, 60],
            psi: 0.2913976591706095,
            js: 0.22567171784647921,
            ks_statistic: 0.18333333333333332,
            ks_p_value: 0.0005588206312670477,
            ks_method: "exact",
            wasserstein: 0.421,
        },
    );
}

#[test]
fn compare_numeric_matches_scipy_with_4_bins() {
    let output = run(&[
        "compare",
        "--reference",
        &fixture("compare_reference.txt"),
        "--current",
        &fixture("compare_current.txt"),
        "--bins",
        "4",
    ]);
    assert_exit(&output, 0);
    check_numeric(
        &single_json_object(&output),
        4,
        &NumericExpected {
            counts: (300, 200),
            missing: (0, 1),
            edges: &[-0.6, 0.0, 0.6],
            reference_counts: &[69, 69, 76, 86],
            current_counts: &[41, 34, 36, 89],
            psi: 0.11570294584785598,
            js: 0.14398178024437203,
            ks_statistic: 0.18333333333333332,
            ks_p_value: 0.0005588206312670477,
            ks_method: "exact",
            wasserstein: 0.421,
        },
    );
}

#[test]
fn compare_numeric_large_samples_use_the_asymptotic_ks() {
    // More than 10,000 values: SciPy's "auto" switches to the asymptotic p-value. The same
    // samples in Python:
    //   ref = np.array([(i * 37 % 10009) / 1000.0 for i in range(10009)])
    //   cur = np.array([(j * 53 % 4001) / 400.0 + 0.5 for j in range(4001)])
    // and the formulas above, with B = 5.
    let reference: String = (0..10_009u64)
        .map(|i| format!("{:?}\n", (i * 37 % 10_009) as f64 / 1000.0))
        .collect();
    let current: String = (0..4_001u64)
        .map(|j| format!("{:?}\n", (j * 53 % 4_001) as f64 / 400.0 + 0.5))
        .collect();
    let reference = TempFile::new("large-ref.txt", reference.as_bytes());
    let current = TempFile::new("large-cur.txt", current.as_bytes());
    let output = run(&[
        "compare",
        "--reference",
        reference.arg(),
        "--current",
        current.arg(),
        "--bins",
        "5",
    ]);
    assert_exit(&output, 0);
    check_numeric(
        &single_json_object(&output),
        5,
        &NumericExpected {
            counts: (10_009, 4_001),
            missing: (0, 0),
            edges: &[2.0016, 4.0032000000000005, 6.0048, 8.006400000000001],
            reference_counts: &[2002, 2002, 2001, 2002, 2002],
            current_counts: &[601, 801, 800, 801, 998],
            psi: 0.025174553616534413,
            js: 0.06728417652057227,
            ks_statistic: 0.050050405772020884,
            ks_p_value: 1.1613373792517752e-06,
            ks_method: "asymp",
            wasserstein: 0.49600000000000005,
        },
    );
}

#[test]
fn compare_numeric_with_one_bin_has_no_edges() {
    let output = run(&[
        "compare",
        "--reference",
        &fixture("compare_reference.txt"),
        "--current",
        &fixture("compare_current.txt"),
        "--bins",
        "1",
    ]);
    assert_exit(&output, 0);
    let report = single_json_object(&output);
    assert_eq!(report["edges"], serde_json::json!([]));
    assert_eq!(report["reference_counts"], serde_json::json!([300]));
    assert_eq!(report["current_counts"], serde_json::json!([200]));
    assert_eq!(report["psi"].as_f64(), Some(0.0));
    assert_eq!(report["js"].as_f64(), Some(0.0));
}

const CATEGORICAL_KEYS: [&str; 9] = [
    "categories",
    "chi2",
    "current_count",
    "current_counts",
    "js",
    "kind",
    "psi",
    "reference_count",
    "reference_counts",
];

// Categorical expected values: categories = sorted(set(reference)) + ["__other__"], counts
// per bin (labels not in the reference go to __other__), psi and js as above, and
//   keep = (ref + cur) > 0
//   scipy.stats.chi2_contingency([ref[keep], cur[keep]], correction=True)
// (statistic, pvalue, dof).

#[test]
fn compare_categorical_matches_scipy() {
    // Fixtures: rng (continuing the one above) .choice over five merchant categories for the
    // reference (400 lines), and over those plus "crypto" and "pets" (unseen in the reference)
    // for the current sample (250 lines).
    let output = run(&[
        "compare",
        "--categorical",
        "--reference",
        &fixture("compare_reference_categories.txt"),
        "--current",
        &fixture("compare_current_categories.txt"),
    ]);
    assert_exit(&output, 0);
    assert_eq!(stderr(&output), "");
    let report = single_json_object(&output);
    assert_eq!(keys(&report), CATEGORICAL_KEYS, "{report}");
    assert_eq!(report["kind"], "categorical");
    assert_eq!(report["reference_count"].as_u64(), Some(400));
    assert_eq!(report["current_count"].as_u64(), Some(250));
    assert_eq!(
        report["categories"],
        serde_json::json!([
            "electronics",
            "fashion",
            "gaming",
            "grocery",
            "travel",
            "__other__"
        ])
    );
    assert_eq!(
        u64_array(&report["reference_counts"], "reference_counts"),
        [46, 87, 96, 140, 31, 0]
    );
    assert_eq!(
        u64_array(&report["current_counts"], "current_counts"),
        [75, 33, 45, 37, 25, 35]
    );
    assert_close(as_f64(&report["psi"], "psi"), 1.4304147987052394, "psi");
    assert_close(as_f64(&report["js"], "js"), 0.37814461557953355, "js");
    let chi2 = &report["chi2"];
    assert_close(
        as_f64(&chi2["statistic"], "chi2.statistic"),
        116.8873156580795,
        "chi2.statistic",
    );
    assert_close(
        as_f64(&chi2["p_value"], "chi2.p_value"),
        1.431560897314004e-23,
        "chi2.p_value",
    );
    assert_eq!(chi2["dof"].as_u64(), Some(5));
}

#[test]
fn compare_categorical_two_categories_uses_yates() {
    // reference: yes no yes yes; current: no no yes no no. __other__ is empty in both, so it
    // is dropped: a 2×2 table, dof 1, Yates' correction (SciPy: 0.9506250000000002,
    // p = 0.3295602599606179).
    let reference = TempFile::new("yn-ref.txt", b"yes\nno\nyes\nyes\n");
    let current = TempFile::new("yn-cur.txt", b"no\nno\nyes\nno\nno\n");
    let output = run(&[
        "compare",
        "--categorical",
        "--reference",
        reference.arg(),
        "--current",
        current.arg(),
    ]);
    assert_exit(&output, 0);
    let report = single_json_object(&output);
    assert_eq!(
        report["categories"],
        serde_json::json!(["no", "yes", "__other__"])
    );
    assert_eq!(report["reference_counts"], serde_json::json!([1, 3, 0]));
    assert_eq!(report["current_counts"], serde_json::json!([4, 1, 0]));
    assert_close(as_f64(&report["psi"], "psi"), 1.3666986573834004, "psi");
    assert_close(as_f64(&report["js"], "js"), 0.48124086419335016, "js");
    assert_close(
        as_f64(&report["chi2"]["statistic"], "chi2.statistic"),
        0.9506250000000002,
        "chi2.statistic",
    );
    assert_close(
        as_f64(&report["chi2"]["p_value"], "chi2.p_value"),
        0.3295602599606179,
        "chi2.p_value",
    );
    assert_eq!(report["chi2"]["dof"].as_u64(), Some(1));
}

#[test]
fn compare_rejects_a_bad_number_naming_file_and_line() {
    let current = TempFile::new("bad-current.txt", b"1.5\n2.5\n\n3,5\n");
    let output = run(&[
        "compare",
        "--reference",
        &fixture("compare_reference.txt"),
        "--current",
        current.arg(),
    ]);
    assert_exit(&output, 2);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "driftwatch: error: {}:4: not a number: \"3,5\"\n",
            current.arg()
        )
    );
    // Same for the reference.
    let reference = TempFile::new("bad-reference.txt", b"oops\n");
    let output = run(&[
        "compare",
        "--reference",
        reference.arg(),
        "--current",
        &fixture("compare_current.txt"),
    ]);
    assert_exit(&output, 2);
    assert_eq!(
        stderr(&output),
        format!(
            "driftwatch: error: {}:1: not a number: \"oops\"\n",
            reference.arg()
        )
    );
}

#[test]
fn compare_rejects_an_empty_reference() {
    let numbers = fixture("compare_current.txt");
    let labels = fixture("compare_current_categories.txt");
    let cases: [(&[u8], &str, bool, &str); 4] = [
        (
            b"",
            &numbers,
            false,
            "reference sample has no finite values",
        ),
        (
            b"\n\n",
            &numbers,
            false,
            "reference sample has no finite values",
        ),
        (
            b"nan\ninf\n",
            &numbers,
            false,
            "reference sample has no finite values",
        ),
        (
            b"",
            &labels,
            true,
            "reference sample has no category values",
        ),
    ];
    for (contents, current, categorical, message) in cases {
        let reference = TempFile::new("empty-ref.txt", contents);
        let mut args = vec![
            "compare",
            "--reference",
            reference.arg(),
            "--current",
            current,
        ];
        if categorical {
            args.push("--categorical");
        }
        let output = run(&args);
        assert_exit(&output, 2);
        assert_eq!(stdout(&output), "");
        assert_eq!(stderr(&output), format!("driftwatch: error: {message}\n"));
    }
}

#[test]
fn compare_rejects_zero_bins_and_a_missing_file() {
    let output = run(&[
        "compare",
        "--reference",
        &fixture("compare_reference.txt"),
        "--current",
        &fixture("compare_current.txt"),
        "--bins",
        "0",
    ]);
    assert_exit(&output, 2);
    assert_eq!(
        stderr(&output),
        "driftwatch: error: --bins must be at least 1\n"
    );

    let missing = format!(
        "{}/driftwatch-cli-{}-missing-current.txt",
        std::env::temp_dir().display(),
        std::process::id()
    );
    let output = run(&[
        "compare",
        "--reference",
        &fixture("compare_reference.txt"),
        "--current",
        &missing,
    ]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).starts_with(&format!("driftwatch: error: {missing}: ")),
        "{}",
        stderr(&output)
    );
}

// ─── check-config ─────────────────────────────────────────────────────────────────────────

fn example_config() -> String {
    format!(
        "{}/config/driftwatch.example.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn check_config_accepts_the_example() {
    let config = example_config();
    let output = run(&["check-config", "--config", &config]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), format!("{config}: ok\n"));
    assert_eq!(stderr(&output), "");
}

#[test]
fn check_config_lists_every_problem() {
    let file = TempFile::new(
        "several-problems.toml",
        br#"
[topics]
alerts = "inference.predictions"

[monitor.windows]
pane_ms = 0

[monitor.detectors.psi]
threshold = -0.5

[monitor.detectors.ks]
p_value = 1.5
"#,
    );
    let output = run(&["check-config", "--config", file.arg()]);
    assert_exit(&output, 2);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "driftwatch: {} has 4 problem(s):\n\
             \x20 - topics.alerts: must differ from topics.predictions (both are \"inference.predictions\")\n\
             \x20 - monitor.windows.pane_ms: must be > 0, got 0\n\
             \x20 - monitor.detectors.psi.threshold: must be a positive number, got -0.5\n\
             \x20 - monitor.detectors.ks.p_value: must be in (0, 1), got 1.5\n",
            file.arg()
        )
    );
}

#[test]
fn check_config_names_an_unknown_key() {
    let file = TempFile::new(
        "unknown-key.toml",
        b"[kafka]\nbrokers = \"a:9092\"\nbrokerz = \"b:9092\"\n",
    );
    let output = run(&["check-config", "--config", file.arg()]);
    assert_exit(&output, 2);
    assert_eq!(stdout(&output), "");
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "driftwatch: {} has 1 problem(s):\n  - kafka.brokerz: unknown field `brokerz`",
            file.arg()
        )),
        "{err}"
    );
    assert!(
        err.ends_with(&format!("({}, line 3, column 1)\n", file.arg())),
        "{err}"
    );
}

/// Reproduces a limitation reported to the maintainer: once the file has one unknown key or
/// wrong type, nothing else is reported (src/config.rs, `from_str_with_env` returns on the
/// first deserialisation error), although check-config promises every problem.
#[test]

fn check_config_lists_an_unknown_key_together_with_other_problems() {
    let file = TempFile::new(
        "unknown-and-invalid.toml",
        b"[kafka]\nbrokerz = \"b:9092\"\n\n[http]\nlisten_addr = \"x\"\n\n[monitor.windows]\npane_ms = 0\n",
    );
    let output = run(&["check-config", "--config", file.arg()]);
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(err.contains("kafka.brokerz"), "{err}");
    assert!(err.contains("http.listen_addr"), "{err}");
    assert!(err.contains("monitor.windows.pane_ms"), "{err}");
}

#[test]
fn check_config_applies_environment_overrides() {
    let config = example_config();
    let output = run_with(
        driftwatch().env("DRIFTWATCH_MONITOR__WINDOWS__PANE_MS", "0"),
        &["check-config", "--config", &config],
        None,
    );
    assert_exit(&output, 2);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "driftwatch: {config} has 1 problem(s):\n  - monitor.windows.pane_ms: must be > 0, got 0\n"
        )
    );

    // A value of the wrong type names the key and the variable.
    let output = run_with(
        driftwatch().env("DRIFTWATCH_MONITOR__WINDOWS__PANE_MS", "soon"),
        &["check-config", "--config", &config],
        None,
    );
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(
        err.contains("monitor.windows.pane_ms: invalid type: string \"soon\""),
        "{err}"
    );
    assert!(
        err.contains("(from environment variable DRIFTWATCH_MONITOR__WINDOWS__PANE_MS)"),
        "{err}"
    );

    // A valid override keeps the example valid.
    let output = run_with(
        driftwatch().env("DRIFTWATCH_MONITOR__WINDOWS__PANE_MS", "30000"),
        &["check-config", "--config", &config],
        None,
    );
    assert_exit(&output, 0);
}

#[test]
fn check_config_names_a_missing_file() {
    let missing = format!(
        "{}/driftwatch-cli-{}-missing.toml",
        std::env::temp_dir().display(),
        std::process::id()
    );
    let output = run(&["check-config", "--config", &missing]);
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "  - {missing}: cannot read the configuration file: "
        )),
        "{err}"
    );
}

// ─── demo ─────────────────────────────────────────────────────────────────────────────────

/// Event time of the demo's first event (2026-01-01T00:00:00Z) and its step per event pair.
const DEMO_START_MS: i64 = 1_767_225_600_000;
const DEMO_STEP_MS: i64 = 20;

fn check_demo(seed: u64) {
    const EVENTS: u64 = 40_000;
    let output = run(&[
        "demo",
        "--json",
        "--events",
        &EVENTS.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    assert_exit(&output, 0);
    let summary = single_json_object(&output);
    assert_eq!(
        keys(&summary),
        [
            "alerts",
            "dead_letters",
            "drift_injected_at",
            "drifted_features",
            "elapsed_seconds",
            "events_processed",
            "events_produced",
            "retrain_requests",
        ],
        "seed {seed}"
    );
    assert_eq!(summary["events_produced"].as_u64(), Some(EVENTS));
    assert_eq!(summary["events_processed"].as_u64(), Some(EVENTS));
    // The demo injects three malformed messages on purpose.
    assert_eq!(summary["dead_letters"].as_u64(), Some(3));
    // --drift-at defaults to half the events; two models alternate, 20 ms per pair.
    let drift_at = summary["drift_injected_at"].as_i64().unwrap();
    assert_eq!(
        drift_at,
        DEMO_START_MS + (EVENTS as i64 / 2 / 2) * DEMO_STEP_MS
    );
    let drifted: Vec<(String, String)> = summary["drifted_features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(keys(f), ["feature", "model_id"]);
            (
                f["model_id"].as_str().unwrap().to_owned(),
                f["feature"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected_drifted = [
        ("fraud-detector", "amount"),
        ("fraud-detector", "merchant_category"),
        ("churn-predictor", "monthly_charges"),
    ];
    assert_eq!(
        drifted,
        expected_drifted.map(|(m, f)| (m.to_owned(), f.to_owned()))
    );

    let alerts = summary["alerts"].as_array().unwrap();
    let mut firing = Vec::new();
    for alert in alerts {
        assert_eq!(
            keys(alert),
            [
                "alert_id",
                "detected_at",
                "detector",
                "model_id",
                "state",
                "subject"
            ],
            "{alert}"
        );
        let state = alert["state"].as_str().unwrap();
        assert!(state == "FIRING" || state == "RESOLVED", "{alert}");
        assert_eq!(alert["alert_id"].as_str().unwrap().len(), 64, "{alert}");
        if state != "FIRING" {
            continue;
        }
        let model = alert["model_id"].as_str().unwrap();
        let subject = alert["subject"].as_str().unwrap();
        let detected_at = alert["detected_at"].as_i64().unwrap();
        assert!(
            detected_at >= drift_at,
            "seed {seed}: false alarm before the drift ({drift_at}): {alert}"
        );
        assert!(
            subject.starts_with("__") || drifted.iter().any(|(m, f)| m == model && f == subject),
            "seed {seed}: FIRING alert on a feature that did not drift: {alert}"
        );
        firing.push((model, subject, detected_at));
    }
    for (model, feature) in &drifted {
        assert!(
            firing
                .iter()
                .any(|(m, s, t)| m == model && s == feature && *t > drift_at),
            "seed {seed}: drift in {model}/{feature} was not caught: {alerts:#?}"
        );
    }
    let alert_ids: BTreeSet<&str> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap())
        .collect();
    assert_eq!(alert_ids.len(), alerts.len(), "alert ids are not unique");

    for request in summary["retrain_requests"].as_array().unwrap() {
        assert_eq!(keys(request), ["model_id", "request_id", "trigger"]);
        assert!(
            ["fraud-detector", "churn-predictor"].contains(&request["model_id"].as_str().unwrap()),
            "{request}"
        );
    }
}

#[test]
fn demo_json_catches_every_drift_without_false_alarms_seed_7() {
    check_demo(7);
}

#[test]
fn demo_json_catches_every_drift_without_false_alarms_seed_99() {
    check_demo(99);
}

// ─── --help ───────────────────────────────────────────────────────────────────────────────

#[test]
fn help_works_for_every_command() {
    let cases: &[(&[&str], &str, &[&str])] = &[
        (
            &["--help"],
            "Usage: driftwatch [OPTIONS] <COMMAND>",
            &["run", "check-config", "demo", "eval", "compare"],
        ),
        (
            &["run", "--help"],
            "Usage: driftwatch run [OPTIONS] --config <CONFIG>",
            &["--config"],
        ),
        (
            &["check-config", "--help"],
            "Usage: driftwatch check-config [OPTIONS] --config <CONFIG>",
            &["--config"],
        ),
        (
            &["demo", "--help"],
            "Usage: driftwatch demo [OPTIONS]",
            &["--events", "--drift-at", "--seed", "--json"],
        ),
        (
            &["eval", "--help"],
            "Usage: driftwatch eval [OPTIONS] <COMMAND>",
            &["adwin"],
        ),
        (
            &["eval", "adwin", "--help"],
            "Usage: driftwatch eval adwin [OPTIONS] --input <INPUT>",
            &[
                "--delta",
                "--clock",
                "--max-buckets",
                "--min-window-length",
                "--grace-period",
                "--input",
                "[default: 0.002]",
                "[default: 32]",
            ],
        ),
        (
            &["compare", "--help"],
            "Usage: driftwatch compare [OPTIONS] --reference <REFERENCE> --current <CURRENT>",
            &["--reference", "--current", "--bins", "--categorical"],
        ),
        (
            &["help", "compare"],
            "Usage: driftwatch compare [OPTIONS] --reference <REFERENCE> --current <CURRENT>",
            &["--bins"],
        ),
    ];
    for (args, usage, mentions) in cases {
        let output = run(args);
        assert_exit(&output, 0);
        let text = stdout(&output);
        assert!(text.contains(usage), "{args:?}:\n{text}");
        for mention in *mentions {
            assert!(text.contains(mention), "{args:?} lacks {mention}:\n{text}");
        }
        assert_eq!(stderr(&output), "", "{args:?}");
    }
    let output = run(&["--version"]);
    assert_exit(&output, 0);
    assert_eq!(
        stdout(&output),
        format!("driftwatch {}\n", env!("CARGO_PKG_VERSION"))
    );
    // No command at all is a usage error.
    let output = run(&[]);
    assert_exit(&output, 2);
}

// ─── replay and baseline ──────────────────────────────────────────────────────────────────

/// A recorded JSON Lines stream for model "shop": `price` (numeric) shifts by +3σ from event
/// `drift_at` on, `basket` (numeric) never moves; each prediction's label follows 2 s later
/// and is right 90 % of the time. Deterministic (a fixed linear congruential generator), 10
/// events per second. Model "tiny" has too few events to leave its warm-up.
fn recorded_stream(n: usize, drift_at: usize) -> String {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    // Sum of 4 uniforms: a bell shape with σ ≈ 0.577.
    let mut bell = move || (0..4).map(|_| uniform()).sum::<f64>() - 2.0;
    let mut events: Vec<(i64, String)> = Vec::new();
    for i in 0..n {
        let time = 1_767_225_600_000_i64 + i as i64 * 100;
        let shift = if i >= drift_at { 1.8 } else { 0.0 };
        let price = 10.0 + bell() + shift;
        let basket = 3.0 + bell();
        let score = if bell() > 0.0 { 0.8 } else { 0.2 };
        let right = bell().abs() < 1.1;
        let truth = if (score > 0.5) == right { "1" } else { "0" };
        events.push((
            time,
            format!(
                "{{\"kind\":\"prediction\",\"event_id\":\"s{i}\",\"model_id\":\"shop\",\"model_version\":\"2\",\"timestamp\":{time},\"features\":{{\"price\":{price},\"basket\":{basket}}},\"prediction\":{{\"score\":{score}}}}}"
            ),
        ));
        events.push((
            time + 2_000,
            format!(
                "{{\"kind\":\"label\",\"event_id\":\"s{i}\",\"model_id\":\"shop\",\"timestamp\":{},\"label\":\"{truth}\"}}",
                time + 2_000
            ),
        ));
    }
    for i in 0..10 {
        events.push((
            1_767_225_600_000 + i * 1_000,
            format!(
                "{{\"event_id\":\"t{i}\",\"model_id\":\"tiny\",\"model_version\":\"1\",\"timestamp\":{},\"features\":{{\"x\":{i}}},\"prediction\":{{\"score\":0.5}}}}",
                1_767_225_600_000 + i * 1_000
            ),
        ));
    }
    events.sort_by_key(|(time, _)| *time);
    let mut text: String = events.into_iter().map(|(_, line)| line + "\n").collect();
    text.push_str("{\"kind\":\"prediction\",\"event_id\":\"broken\"\n");
    text
}

const REPLAY_CONFIG: &[u8] = b"[monitor.reference]\nwarmup_events = 3000\n\
    [monitor.windows]\npanes = 5\nallowed_lateness_ms = 10000\n";

#[test]
fn replay_prints_the_live_outputs_deterministically_and_skips_bad_lines() {
    let events = TempFile::new("events.jsonl", recorded_stream(20_000, 10_000).as_bytes());
    let config = TempFile::new("replay.toml", REPLAY_CONFIG);
    let args = ["replay", "--config", config.arg(), "--input", events.arg()];
    let output = run(&args);
    assert_exit(&output, 0);
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let firing: Vec<&Value> = lines.iter().filter(|v| v["state"] == "FIRING").collect();
    assert!(
        firing.iter().any(|v| v["subject"] == "price"),
        "the drifted feature: {lines:#?}"
    );
    assert!(
        firing.iter().all(|v| v["subject"] != "basket"),
        "no false alarm: {lines:#?}"
    );
    // The malformed last line is reported with its number, and skipped.
    let errors = stderr(&output);
    assert!(errors.contains("line=40011"), "{errors}");
    // Same file, same bytes.
    assert_eq!(run(&args).stdout, output.stdout);
}

/// The events of `jsonl` (lines that do not decode are left out) as an Avro object container
/// file written with `codec`, whose schema is the union of driftwatch's prediction and label
/// schemas (each with an extra field, as an evolved producer's) and a third record type; every
/// `foreign_every`-th record is of that third type.
fn avro_container(jsonl: &str, codec: apache_avro::Codec, foreign_every: usize) -> Vec<u8> {
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value as Avro;
    use driftwatch::codec::{encode_label_avro, encode_prediction_avro, json, EventKind};
    use driftwatch::event::Event;

    let ours = |name: &str| {
        std::fs::read_to_string(format!("{}/schemas/{name}", env!("CARGO_MANIFEST_DIR")))
            .expect("schema file")
    };
    let foreign =
        r#"{"type": "record", "name": "Heartbeat", "fields": [{"name": "at", "type": "long"}]}"#;
    let union = apache_avro::Schema::parse_str(&format!(
        "[{}, {}, {foreign}]",
        ours("prediction_event.avsc"),
        ours("label_event.avsc")
    ))
    .expect("a union of the three");
    let apache_avro::Schema::Union(branches) = &union else {
        panic!("not a union")
    };
    let branches = branches.variants().to_vec();
    // An evolved writer: a field of the producer's own after ours (the reader skips it).
    let evolve = |value: Avro| match value {
        Avro::Record(mut fields) => {
            fields.push(("producer_host".to_owned(), Avro::String("web-7".to_owned())));
            Avro::Record(fields)
        }
        other => other,
    };
    let mut evolved: Vec<apache_avro::Schema> = Vec::new();
    for text in [ours("prediction_event.avsc"), ours("label_event.avsc")] {
        let mut schema: serde_json::Value = serde_json::from_str(&text).expect("avsc is JSON");
        schema["fields"]
            .as_array_mut()
            .expect("fields")
            .push(serde_json::json!({"name": "producer_host", "type": "string", "default": ""}));
        evolved.push(apache_avro::Schema::parse_str(&schema.to_string()).expect("evolved"));
    }
    let writer_union = apache_avro::Schema::parse_str(&format!(
        "[{}, {}, {foreign}]",
        serde_json::to_string(&evolved[0]).expect("schema"),
        serde_json::to_string(&evolved[1]).expect("schema")
    ))
    .expect("the evolved union");
    let mut writer = apache_avro::Writer::with_codec(&writer_union, Vec::new(), codec)
        .expect("a container writer");
    let mut count = 0;
    for line in jsonl.lines() {
        let Ok(event) = json::decode_event(line.as_bytes(), EventKind::Prediction) else {
            continue;
        };
        count += 1;
        if foreign_every > 0 && count % foreign_every == 0 {
            let heartbeat = Avro::Record(vec![("at".to_owned(), Avro::Long(count as i64))]);
            writer
                .append_value(Avro::Union(2, Box::new(heartbeat)))
                .expect("append");
        }
        let (branch, datum) = match &event {
            Event::Prediction(p) => (0, encode_prediction_avro(p)),
            Event::Label(l) => (1, encode_label_avro(l)),
        };
        let value = GenericDatumReader::builder(&branches[branch])
            .build()
            .and_then(|reader| reader.read_value(&mut datum.as_slice()))
            .expect("our own encoding reads back");
        writer
            .append_value(Avro::Union(branch as u32, Box::new(evolve(value))))
            .expect("append");
    }
    writer.into_inner().expect("the container")
}

#[test]
fn replay_reads_avro_container_files_as_it_reads_json_lines() {
    let jsonl = recorded_stream(20_000, 10_000);
    let config = TempFile::new("replay.toml", REPLAY_CONFIG);
    let from_lines = TempFile::new("events.jsonl", jsonl.as_bytes());
    let expected = run(&[
        "replay",
        "--config",
        config.arg(),
        "--input",
        from_lines.arg(),
    ]);
    assert_exit(&expected, 0);
    assert!(
        stdout(&expected).contains("\"subject\":\"price\""),
        "the JSON Lines replay catches the drift"
    );
    for codec in [
        apache_avro::Codec::Null,
        apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()),
        apache_avro::Codec::Snappy,
    ] {
        let container = TempFile::new("events.avro", &avro_container(&jsonl, codec, 0));
        let output = run(&[
            "replay",
            "--config",
            config.arg(),
            "--input",
            container.arg(),
        ]);
        assert_exit(&output, 0);
        // Same events, same outputs, byte for byte (offsets are line numbers in one and
        // record numbers in the other, so retrain requests' ranges differ: none here).
        assert!(!stdout(&output).contains("retrain"), "{}", stdout(&output));
        assert_eq!(stdout(&output), stdout(&expected), "{codec:?}");
    }
    // From standard input too, with records of a foreign type among them: each is skipped
    // and reported with its number, and the rest replays as before.
    let with_foreign = avro_container(&jsonl, apache_avro::Codec::Snappy, 1_000);
    let output = run_with(
        &mut driftwatch(),
        &["replay", "--config", config.arg(), "--input", "-"],
        Some(&with_foreign),
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), stdout(&expected));
    let errors = stderr(&output);
    assert!(errors.contains("record=1000 "), "{errors}");
    assert!(
        errors.contains("neither a prediction nor a label"),
        "{errors}"
    );
}

#[test]
fn replay_refuses_a_damaged_or_foreign_avro_container_with_the_reason() {
    let jsonl = recorded_stream(2_000, 1_000);
    let config = TempFile::new("replay.toml", REPLAY_CONFIG);
    // A damaged block: the bytes of one record overwritten in the middle of the file.
    let mut damaged = avro_container(&jsonl, apache_avro::Codec::Null, 0);
    let middle = damaged.len() / 2;
    damaged[middle..middle + 64].fill(0xff);
    // Cut short inside the last block's closing sync marker (a cut exactly between two
    // blocks reads as a shorter file: the format cannot tell).
    let whole = avro_container(&jsonl, apache_avro::Codec::Snappy, 0);
    let truncated = whole[..whole.len() - 8].to_vec();
    for (name, bytes, reason) in [
        ("damaged", damaged, "cannot be read past a damaged block"),
        (
            "truncated",
            truncated,
            "cannot be read past a damaged block",
        ),
    ] {
        let file = TempFile::new(&format!("{name}.avro"), &bytes);
        let output = run(&["replay", "--config", config.arg(), "--input", file.arg()]);
        assert_exit(&output, 2);
        let errors = stderr(&output);
        assert!(errors.contains(reason), "{name}: {errors}");
        assert!(!errors.contains("panicked"), "{name}: {errors}");
    }
    // A container of something else: refused at once, naming why.
    let schema = apache_avro::Schema::parse_str(
        r#"{"type": "record", "name": "Click", "fields": [{"name": "url", "type": "string"}]}"#,
    )
    .expect("schema");
    let mut writer = apache_avro::Writer::new(&schema, Vec::new()).expect("writer");
    writer
        .append_value(apache_avro::types::Value::Record(vec![(
            "url".to_owned(),
            apache_avro::types::Value::String("/".to_owned()),
        )]))
        .expect("append");
    let clicks = TempFile::new("clicks.avro", &writer.into_inner().expect("container"));
    let output = run(&["replay", "--config", config.arg(), "--input", clicks.arg()]);
    assert_exit(&output, 2);
    let errors = stderr(&output);
    assert!(
        errors.contains("cannot be read as driftwatch events"),
        "{errors}"
    );
    assert!(errors.contains("not a prediction"), "{errors}");
}

#[test]
fn replay_summary_follows_its_json_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/schemas/drift_summary.schema.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let events = TempFile::new("events.jsonl", recorded_stream(20_000, 10_000).as_bytes());
    let config = TempFile::new("replay.toml", REPLAY_CONFIG);
    let output = run(&[
        "replay",
        "--config",
        config.arg(),
        "--input",
        events.arg(),
        "--summary",
    ]);
    assert_exit(&output, 0);
    let summaries: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summaries.len(), 2, "{summaries:#?}");
    for summary in &summaries {
        let errors: Vec<String> = validator
            .iter_errors(summary)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{summary:#}");
    }
    let shop = &summaries[0];
    assert_eq!(shop["model_id"], "shop");
    assert_eq!(shop["status"], "drift_detected");
    assert_eq!(shop["drift_score"], 0.5, "one of two features drifted");
    assert!(shop["performance"]["window"]["accuracy"].as_f64().unwrap() > 0.7);
    assert_eq!(
        shop["performance"]["fairness"]["reason"],
        "no sensitive attribute"
    );
    let tiny = &summaries[1];
    assert_eq!(tiny["status"], "skipped");
    // The schema is not a formality: a wrong status is refused.
    let mut wrong = shop.clone();
    wrong["status"] = Value::from("fine");
    assert!(!validator.is_valid(&wrong));
}

#[test]
fn replay_report_is_a_self_contained_html_page_with_plots() {
    let events = TempFile::new("events.jsonl", recorded_stream(20_000, 10_000).as_bytes());
    let config = TempFile::new("replay.toml", REPLAY_CONFIG);
    let report = TempFile::new("report.html", b"");
    let output = run(&[
        "replay",
        "--config",
        config.arg(),
        "--input",
        events.arg(),
        "--report",
        report.arg(),
    ]);
    assert_exit(&output, 0);
    let html = std::fs::read_to_string(&report.0).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"));
    assert!(html.matches("<svg").count() >= 3, "plots");
    assert!(html.contains("price") && html.contains("accuracy"));
    assert!(!html.contains("<script"), "no JavaScript");
}

#[test]
fn a_baseline_from_training_data_replaces_the_warm_up() {
    // Training data: the pre-drift distribution of `recorded_stream`.
    let mut csv = String::from("price,basket,score,label\n");
    let training = recorded_stream(4_000, usize::MAX);
    for line in training
        .lines()
        .filter(|l| l.contains("\"kind\":\"prediction\""))
    {
        // The stream ends with a deliberately broken line.
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        csv.push_str(&format!(
            "{},{},{},1\n",
            event["features"]["price"], event["features"]["basket"], event["prediction"]["score"]
        ));
    }
    let train = TempFile::new("train.csv", csv.as_bytes());
    let baseline = TempFile::new("shop.json", b"");
    let output = run(&[
        "baseline",
        "--input",
        train.arg(),
        "--out",
        baseline.arg(),
        "--model-id",
        "shop",
        "--score-column",
        "score",
        "--label-column",
        "label",
    ]);
    assert_exit(&output, 0);
    let profile: Value = serde_json::from_slice(&std::fs::read(&baseline.0).unwrap()).unwrap();
    assert_eq!(profile["format"], "driftwatch-baseline");
    assert_eq!(profile["rows"], 4_000);
    assert_eq!(
        profile["profile"]["price"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        9
    );

    // Production: 2,000 events (fewer than a warm-up), all drifted in price.
    let production = TempFile::new("prod.jsonl", recorded_stream(2_000, 0).as_bytes());
    let baseline_name = baseline.0.file_name().unwrap().to_str().unwrap();
    let config = TempFile::new(
        "baseline.toml",
        format!(
            "[monitor.windows]\npanes = 2\nallowed_lateness_ms = 10000\n\
             [[monitor.models]]\nid = \"shop\"\nbaseline = \"{baseline_name}\"\n"
        )
        .as_bytes(),
    );
    let output = run(&[
        "replay",
        "--config",
        config.arg(),
        "--input",
        production.arg(),
        "--summary",
    ]);
    assert_exit(&output, 0);
    let shop: Value = serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    assert_eq!(shop["model_id"], "shop");
    assert_eq!(shop["status"], "drift_detected", "{shop:#}");

    // A baseline of another model is refused at start, with the reason.
    let wrong = TempFile::new(
        "wrong.toml",
        format!("[[monitor.models]]\nid = \"other\"\nbaseline = \"{baseline_name}\"\n").as_bytes(),
    );
    let output = run(&["check-config", "--config", wrong.arg()]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("is the baseline of model \"shop\""));
}

#[test]
fn baseline_errors_name_the_file_and_line() {
    let train = TempFile::new("bad.csv", b"price,score\n1.0,0.5\n2.0,high\n");
    let out = TempFile::new("out.json", b"");
    let output = run(&[
        "baseline",
        "--input",
        train.arg(),
        "--out",
        out.arg(),
        "--model-id",
        "m",
        "--score-column",
        "score",
    ]);
    assert_exit(&output, 2);
    let errors = stderr(&output);
    assert!(
        errors.contains(":3: score is not a number: \"high\""),
        "{errors}"
    );
}
