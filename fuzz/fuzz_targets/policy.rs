//! The policy file. Properties: every diagnostic names the file and a line and column
//! inside the source; a policy that passes renders its notices (Markdown, HTML, the
//! Article 30 CSV) without failing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_policy::{Diagnostic, parse, render};

fn located(d: &Diagnostic, source: &str) {
    let lines = source.split('\n').count();
    assert_eq!(d.file, "fuzz.toml", "{d:?}");
    assert!(
        (1..=lines).contains(&d.line),
        "line {} of {lines}: {d:?}",
        d.line
    );
    assert!(d.column >= 1, "{d:?}");
    assert!(!d.message.trim().is_empty(), "{d:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match parse(source, "fuzz.toml") {
        Ok(checked) => {
            for w in &checked.warnings {
                located(w, source);
            }
            assert!(!render::notice_markdown(&checked.policy).is_empty());
            assert!(!render::notice_html(&checked.policy).is_empty());
            assert!(!render::article30_csv(&checked.policy).is_empty());
        }
        Err(diagnostics) => {
            assert!(diagnostics.iter().any(Diagnostic::is_error));
            for d in &diagnostics {
                located(d, source);
            }
        }
    }
});
