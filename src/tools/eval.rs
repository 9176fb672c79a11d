//! `driftwatch eval adwin`: ADWIN over a file of numbers, one JSON object per detection.

use std::io::Write;

use serde::Serialize;

use super::lines::{for_each_line, open, parse_number, InputError};
use crate::cli::EvalAdwinArgs;
use crate::detect::adwin::Adwin;

/// One detection, as printed (one JSON object per line).
#[derive(Debug, Serialize)]
pub struct Detection {
    /// 0-based index of the element whose update detected the change.
    pub index: u64,
    /// Window width right after the detection (the window River keeps until its reset).
    pub width: u64,
    /// Mean of that window.
    pub estimation: f64,
}

/// Why `eval adwin` failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Unusable parameters (every problem listed).
    #[error("invalid ADWIN parameters: {0}")]
    Params(String),
    /// Bad input file or line.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

/// Streams the input through ADWIN, writing each detection to `out` as soon as it happens.
/// Non-finite numbers (`nan`, `inf`) are rejected like non-numbers: ADWIN's running sums would
/// never recover from them.
///
/// # Errors
/// See [`EvalError`]; detections printed before an input error stay printed.
pub fn eval_adwin(args: &EvalAdwinArgs, out: &mut impl Write) -> Result<u64, EvalError> {
    let mut adwin = Adwin::new(args.params()).map_err(|problems| {
        EvalError::Params(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let path = args.input.as_path();
    let mut index = 0u64;
    let mut detections = 0u64;
    let mut write_error = None;
    for_each_line(open(path)?, path, |line, text| {
        let value = parse_number(path, line, text)?;
        if !value.is_finite() {
            return Err(InputError::NotANumber {
                path: path.to_owned(),
                line,
                value: text.chars().take(80).collect(),
            });
        }
        if adwin.update(value) {
            detections += 1;
            let detection = Detection {
                index,
                width: adwin.width(),
                estimation: adwin.estimation(),
            };
            let written = serde_json::to_writer(&mut *out, &detection)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(error) = written {
                write_error.get_or_insert(error);
            }
        }
        index += 1;
        Ok(())
    })?;
    if let Some(error) = write_error {
        return Err(EvalError::Output(error));
    }
    out.flush().map_err(EvalError::Output)?;
    Ok(detections)
}
