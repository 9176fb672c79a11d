//! Criterion benchmarks of the detector core (issue: detector core, item 7).
//!
//! Targets (benchmarks, not tests): ADWIN ≥ 40M updates/s on one core; a 20-feature event
//! binned and added to its windows in ≤ 300 ns; exact KS on 10k vs 10k in ≤ 0.5 ms.
//! Run: `cargo bench --bench detectors`; figures go to BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch::detect::adwin::{Adwin, AdwinParams};
use driftwatch::detect::binning::{sort_f64, sorted_finite, FineGrid, NumericBins};
use driftwatch::detect::divergence::{jensen_shannon, psi};
use driftwatch::detect::ks::{ks_2samp, ks_2samp_sorted};
use driftwatch::detect::sketch::{
    ks_from_sketch, wasserstein_from_sketch, ReferenceSample, WindowSketch,
};
use driftwatch::detect::window::PaneWindow;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

fn normal_sample(rng: &mut StdRng, n: usize, mean: f64) -> Vec<f64> {
    let normal = Normal::new(mean, 1.0).unwrap();
    (0..n).map(|_| normal.sample(rng)).collect()
}

fn adwin(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    // A stream with a mean shift every 100k elements, so detections and resets are exercised.
    let stream: Vec<f64> = (0..1_000_000)
        .map(|i| {
            let mean = if (i / 100_000) % 2 == 0 { 0.0 } else { 0.5 };
            mean + rng.random::<f64>()
        })
        .collect();
    let mut group = c.benchmark_group("adwin");
    group.throughput(Throughput::Elements(stream.len() as u64));
    group.bench_function("update_1M_default_params", |b| {
        b.iter(|| {
            let mut detector = Adwin::new(AdwinParams::default()).unwrap();
            let mut detections = 0u32;
            for &x in &stream {
                detections += u32::from(detector.update(x));
            }
            black_box(detections)
        })
    });
    group.finish();
}

/// One value of feature `f` in the "mixed" shape: a third heavy-tailed (log-normal, like
/// amounts and durations), a third small integers (counts: runs of equal quantile edges), a
/// third normal.
fn mixed_value(rng: &mut StdRng, f: usize) -> f64 {
    let z: f64 = Normal::new(0.0, 1.0).unwrap().sample(rng);
    match f % 3 {
        0 => (3.0 + 1.2 * z).exp(),
        1 => (3.0 + 1.5 * z).max(0.0).round(),
        _ => 100.0 * f as f64 + 15.0 * z,
    }
}

/// Bins a 20-feature event on its sketch grids and records it in its pane windows.
/// `normal`: every feature N(f, 1) with events uniform over ±2 (the original figure);
/// `mixed`: reference and events drawn from [`mixed_value`], as real features look.
fn event_binning(c: &mut Criterion) {
    const FEATURES: usize = 20;
    let refinement = std::env::var("DW_REFINE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(26);
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    for shape in ["normal", "mixed"] {
        let mut rng = StdRng::seed_from_u64(11);
        let references: Vec<ReferenceSample> = (0..FEATURES)
            .map(|f| {
                let sample: Vec<f64> = if shape == "normal" {
                    normal_sample(&mut rng, 10_000, f as f64)
                } else {
                    (0..10_000).map(|_| mixed_value(&mut rng, f)).collect()
                };
                let sorted = sorted_finite(&sample);
                let grid = FineGrid::from_sorted(&sorted, 10, refinement).unwrap();
                ReferenceSample::new(sorted, grid)
            })
            .collect();
        // 4096 distinct events, replayed in a loop, each in a pane that advances every 1000.
        let events: Vec<[f64; FEATURES]> = (0..4096)
            .map(|_| {
                std::array::from_fn(|f| {
                    if shape == "normal" {
                        f as f64 + rng.random::<f64>() * 4.0 - 2.0
                    } else {
                        mixed_value(&mut rng, f)
                    }
                })
            })
            .collect();
        let mut windows: Vec<PaneWindow> = references
            .iter()
            .map(|r| PaneWindow::new(r.grid().cells(), 60).unwrap())
            .collect();
        let mut n = 0u64;
        let name = if shape == "normal" {
            "bin_and_window_20_features".to_owned()
        } else {
            "bin_and_window_20_mixed_features".to_owned()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let event = &events[(n % 4096) as usize];
                let pane = (n / 1000) as i64;
                for ((window, reference), &value) in windows.iter_mut().zip(&references).zip(event)
                {
                    let cell = reference.grid().cell_of(value);
                    window.record_value(pane, cell, value);
                }
                n += 1;
                if n % 1000 == 0 {
                    for window in &mut windows {
                        window.close_through(pane);
                    }
                }
            })
        });
    }
    group.finish();
}

fn window_statistics(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(13);
    let reference = normal_sample(&mut rng, 10_000, 0.0);
    let current = normal_sample(&mut rng, 10_000, 0.05);
    let sorted_ref = sorted_finite(&reference);
    let sorted_cur = sorted_finite(&current);
    let bins = NumericBins::from_sorted(&sorted_ref, 10).unwrap();
    let reference_counts = bins.histogram(&sorted_ref);
    let current_counts = bins.histogram(&sorted_cur);

    let grid = FineGrid::from_sorted(&sorted_ref, 10, 26).unwrap();
    let sample = ReferenceSample::new(sorted_ref.clone(), grid);
    let mut cells = vec![0u64; sample.grid().cells()];
    let (mut low, mut high) = (0.0, 0.0);
    for &v in &current {
        let cell = sample.grid().cell_of(v);
        cells[cell] += 1;
        if cell == 0 {
            low += v;
        } else if cell == cells.len() - 1 {
            high += v;
        }
    }
    let window = WindowSketch {
        cell_counts: &cells,
        low_tail_sum: low,
        high_tail_sum: high,
    };

    let mut group = c.benchmark_group("window");
    group.bench_function("psi_10_bins", |b| {
        b.iter(|| psi(black_box(&reference_counts), black_box(&current_counts)))
    });
    group.bench_function("js_10_bins", |b| {
        b.iter(|| jensen_shannon(black_box(&reference_counts), black_box(&current_counts)))
    });
    group.bench_function("ks_exact_10k_vs_10k_presorted", |b| {
        b.iter(|| ks_2samp_sorted(black_box(&sorted_ref), black_box(&sorted_cur)))
    });
    group.bench_function("ks_exact_10k_vs_10k_unsorted", |b| {
        b.iter_batched(
            || (reference.clone(), current.clone()),
            |(r, c)| ks_2samp(&r, &c),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("sort_10k_unsorted", |b| {
        b.iter_batched(
            || current.clone(),
            |mut values| {
                sort_f64(&mut values);
                values
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("ks_sketch_10k_ref_10k_window", |b| {
        b.iter(|| ks_from_sketch(black_box(&sample), black_box(&window)))
    });
    group.bench_function("wasserstein_sketch_10k_ref_10k_window", |b| {
        b.iter(|| wasserstein_from_sketch(black_box(&sample), black_box(&window)))
    });
    group.finish();
}

criterion_group!(benches, adwin, event_binning, window_statistics);
criterion_main!(benches);
