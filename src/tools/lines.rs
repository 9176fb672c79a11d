//! Reading one value per line, with errors that name the file, line and value.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A problem with an input file, precise enough to fix it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// File as given by the user.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A line is not a number.
    #[error("{path}:{line}: not a number: {value:?}")]
    NotANumber {
        /// File as given by the user.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The offending text (trimmed, cut to 80 characters).
        value: String,
    },
}

/// Opens `path` for reading, `-` meaning standard input.
///
/// # Errors
/// [`InputError::Io`] when the file cannot be opened.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>, InputError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(io::stdin())));
    }
    let file = File::open(path).map_err(|source| InputError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(Box::new(BufReader::with_capacity(1 << 16, file)) as Box<dyn BufRead>)
}

/// Calls `each(line_number, text)` for every non-blank line (trimmed). Blank lines are skipped:
/// a trailing newline or an empty line between values is not a value.
///
/// # Errors
/// I/O errors, or whatever `each` returns.
pub fn for_each_line<R: Read>(
    reader: R,
    path: &Path,
    mut each: impl FnMut(u64, &str) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let mut reader = BufReader::new(reader);
    let mut buffer = String::new();
    let mut line_number = 0u64;
    loop {
        buffer.clear();
        let read = reader
            .read_line(&mut buffer)
            .map_err(|source| InputError::Io {
                path: path.to_owned(),
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        line_number += 1;
        let text = buffer.trim();
        if !text.is_empty() {
            each(line_number, text)?;
        }
    }
}

/// Parses a line as a number; `nan`, `inf` and friends parse too (callers decide what
/// non-finite values mean).
///
/// # Errors
/// [`InputError::NotANumber`] naming the file, line and text.
pub fn parse_number(path: &Path, line: u64, text: &str) -> Result<f64, InputError> {
    text.parse::<f64>().map_err(|_| InputError::NotANumber {
        path: path.to_owned(),
        line,
        value: text.chars().take(80).collect(),
    })
}

/// Reads every non-blank line of `path` as a number.
///
/// # Errors
/// As [`for_each_line`] and [`parse_number`].
pub fn read_numbers(path: &Path) -> Result<Vec<f64>, InputError> {
    let mut values = Vec::new();
    for_each_line(open(path)?, path, |line, text| {
        values.push(parse_number(path, line, text)?);
        Ok(())
    })?;
    Ok(values)
}

/// Reads every non-blank line of `path` as a label.
///
/// # Errors
/// As [`for_each_line`].
pub fn read_labels(path: &Path) -> Result<Vec<String>, InputError> {
    let mut labels = Vec::new();
    for_each_line(open(path)?, path, |_, text| {
        labels.push(text.to_owned());
        Ok(())
    })?;
    Ok(labels)
}
