//! The two kinds of failure: one bad row, or a whole input that is not what was expected.

use std::io;

/// One row (CSV) or record (JSON object, XML `<cdr>`) that could not be read. Parsing goes on
/// with the next one. The reason names the column or field and the kind of value found,
/// never the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RowError {
    /// 1-based line where the row or record starts.
    pub line: u64,
    /// What was wrong, in words.
    pub reason: String,
}

impl RowError {
    pub(crate) fn new(line: u64, reason: impl Into<String>) -> RowError {
        RowError {
            line,
            reason: reason.into(),
        }
    }
}

/// The input as a whole cannot be parsed: unknown format, or a CSV whose columns do not fit
/// the Asterisk `cdr_csv` layout. Nothing was read from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input could not be opened or read.
    #[error("cannot read {what}: {source}")]
    Io {
        /// The file (or "input").
        what: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Nothing but whitespace (or nothing at all).
    #[error("{what} is empty: no call records to read")]
    Empty {
        /// The file (or "input").
        what: String,
    },
    /// Not XML, JSON or Asterisk `cdr_csv`.
    #[error("{what} is not a call record format Steward reads ({seen})")]
    Unrecognised {
        /// The file (or "input").
        what: String,
        /// What the first bytes look like (never the bytes themselves).
        seen: String,
    },
    /// A CSV whose rows do not fit Asterisk's `cdr_csv` column layout.
    #[error(
        "not an Asterisk cdr_csv file: line {line}: {reason} ({fitted} of {sampled} sampled rows \
         fit the cdr_csv layout). The file looks like a different layout, for example a \
         cdr_custom Master.csv with its own column order; it was refused rather than \
         mis-mapped"
    )]
    ForeignLayout {
        /// Line of the first row that did not fit.
        line: u64,
        /// 1-based column that did not fit, when one column is to blame (not for a wrong
        /// column count).
        column: Option<usize>,
        /// Which column did not fit and what it held.
        reason: String,
        /// Sampled rows that did fit.
        fitted: usize,
        /// Rows sampled (the first up to 20 well-formed rows).
        sampled: usize,
    },
}
