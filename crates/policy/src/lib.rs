//! Steward's policy as code: the privacy statement's data categories, purposes, lawful
//! bases, recipients and retention periods, read from a TOML file, checked, queried by
//! the core on every use of data, and rendered as a privacy notice and an Article 30
//! record. The file format is described in `docs/POLICY.md`.

mod diagnostic;
mod fides;
mod geo;
mod model;
mod raw;
pub mod render;
mod retention;
mod validate;

use std::path::Path;

pub use diagnostic::{Diagnostic, Severity};
pub use model::{
    AccessRole, Category, ConsentRule, ConsentableUse, DEFAULT_TIME_ZONE, Jurisdiction,
    LawfulBasis, OtherParties, Policy, PolicyMeta, Purpose, Recipient, RecipientKind,
    RetentionStart, SubjectKind, UseError, UseRule,
};
pub use retention::{Retention, RetentionError, RetentionUnit};

use diagnostic::Reporter;

/// A policy that passed validation, with the warnings found on the way.
#[derive(Clone, Debug)]
pub struct Checked {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates a policy. `file_name` is only used in diagnostics.
///
/// On failure the list holds every error found, plus any warnings, in file order.
/// A TOML syntax or type error stops parsing, so it is reported alone.
pub fn parse(source: &str, file_name: &str) -> Result<Checked, Vec<Diagnostic>> {
    let mut report = Reporter::new(file_name, source);
    let raw: raw::RawFile = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(error) => {
            report.error(error.span().unwrap_or(0..0), error.message().trim_end());
            return Err(report.finish());
        }
    };
    let policy = validate::check(raw, &mut report);
    if report.has_errors() {
        Err(report.finish())
    } else {
        Ok(Checked {
            policy,
            warnings: report.finish(),
        })
    }
}

/// Reads and checks a policy file.
pub fn load(path: &Path) -> Result<Checked, Vec<Diagnostic>> {
    let file_name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(source) => parse(&source, &file_name),
        Err(error) => {
            let mut report = Reporter::new(&file_name, "");
            report.error(0..0, format!("cannot read the policy file: {error}"));
            Err(report.finish())
        }
    }
}
