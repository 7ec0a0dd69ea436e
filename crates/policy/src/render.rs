//! The policy for people: a privacy notice (Markdown and standalone HTML) and an
//! Article 30 record of processing activities (CSV).
//!
//! The notice is built once as a small document model and then written out in each
//! format, so the Markdown and HTML versions cannot drift apart.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::{Category, ConsentRule, Policy, RetentionStart};

/// File names written by [`render_to_dir`].
pub const NOTICE_MARKDOWN_FILE: &str = "privacy-notice.md";
pub const NOTICE_HTML_FILE: &str = "privacy-notice.html";
pub const ARTICLE30_FILE: &str = "article30.csv";

/// The privacy notice as Markdown (CommonMark with GitHub-style tables).
pub fn notice_markdown(policy: &Policy) -> String {
    let mut out = String::new();
    for block in notice(policy) {
        block.write_markdown(&mut out);
        out.push('\n');
    }
    out
}

/// The privacy notice's body as an HTML fragment (headings, paragraphs, tables;
/// no style, no script), for embedding in a page that brings its own styles.
pub fn notice_body_html(policy: &Policy) -> String {
    let mut body = String::new();
    for block in notice(policy) {
        block.write_html(&mut body);
    }
    body
}

/// The privacy notice as one standalone HTML5 document: no external assets, no script.
pub fn notice_html(policy: &Policy) -> String {
    let body = notice_body_html(policy);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Privacy notice: {title}</title>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        title = html_escape(&policy.meta().controller),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;line-height:1.5;margin:0;color:#1b1b1b}\
main{max-width:60rem;margin:0 auto;padding:1rem 1.5rem}\
table{border-collapse:collapse;margin:0.5rem 0 1rem;width:100%}\
th,td{border:1px solid #bbb;padding:0.3rem 0.5rem;text-align:left;vertical-align:top}\
th{background:#f0f0f0}";

/// Column names of the Article 30 record, one row per category and purpose.
const ARTICLE30_COLUMNS: [&str; 17] = [
    "controller",
    "controller_address",
    "category_id",
    "data_category",
    "fides_categories",
    "data_subjects",
    "source",
    "purpose_id",
    "purpose",
    "purpose_description",
    "fides_data_use",
    "lawful_basis",
    "consent",
    "recipients",
    "third_country_transfers",
    "retention",
    "retention_starts",
];

/// The Article 30 record of processing activities as CSV with a header row: one row per
/// category and purpose, lists joined with "; ".
pub fn article30_csv(policy: &Policy) -> String {
    let meta = policy.meta();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut result = writer.write_record(ARTICLE30_COLUMNS);
    for (category_id, category) in policy.categories() {
        for purpose_id in &category.purposes {
            let purpose = policy.purpose(purpose_id);
            let rule = category.rule_for(purpose_id);
            let row: [String; 17] = [
                meta.controller.clone(),
                meta.controller_address.clone(),
                category_id.to_owned(),
                category.name.clone(),
                category.fides_categories.join("; "),
                subject_labels(category),
                category.source.clone(),
                purpose_id.clone(),
                purpose.map(|p| p.name.clone()).unwrap_or_default(),
                purpose.map(|p| p.description.clone()).unwrap_or_default(),
                purpose
                    .map(|p| p.fides_data_use.clone())
                    .unwrap_or_default(),
                rule.map(|r| r.basis.label().to_owned()).unwrap_or_default(),
                rule.map(|r| consent_code(r.consent).to_owned())
                    .unwrap_or_default(),
                recipient_list(policy, category).join("; "),
                transfers(policy, category).join("; "),
                category.retention.to_string(),
                start_code(category.retention_starts).to_owned(),
            ];
            result = result.and(writer.write_record(&row));
        }
    }
    // Fixed-width rows written to memory can only fail on I/O, and memory does no I/O.
    let bytes = result.ok().and_then(|()| writer.into_inner().ok());
    bytes
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// Writes the notice (Markdown and HTML) and the Article 30 record into `dir`,
/// creating it if needed, and returns the paths written.
pub fn render_to_dir(policy: &Policy, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let outputs = [
        (NOTICE_MARKDOWN_FILE, notice_markdown(policy)),
        (NOTICE_HTML_FILE, notice_html(policy)),
        (ARTICLE30_FILE, article30_csv(policy)),
    ];
    let mut written = Vec::with_capacity(outputs.len());
    for (name, contents) in outputs {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}

fn consent_code(rule: ConsentRule) -> &'static str {
    match rule {
        ConsentRule::NotNeeded => "not needed",
        ConsentRule::Standing => "standing",
        ConsentRule::SingleUse => "single use",
    }
}

fn start_code(start: RetentionStart) -> &'static str {
    match start {
        RetentionStart::LastEngagement => "last engagement",
        RetentionStart::Collection => "collection",
    }
}

fn subject_labels(category: &Category) -> String {
    let labels: Vec<&str> = category.subjects.iter().map(|s| s.label()).collect();
    labels.join("; ")
}

fn recipient_list(policy: &Policy, category: &Category) -> Vec<String> {
    category
        .recipients
        .iter()
        .filter_map(|id| policy.recipient(id))
        .map(|r| format!("{} ({})", r.name, r.kind.label()))
        .collect()
}

fn transfers(policy: &Policy, category: &Category) -> Vec<String> {
    category
        .recipients
        .iter()
        .filter_map(|id| policy.recipient(id))
        .filter(|r| r.is_third_country())
        .map(|r| {
            format!(
                "{} ({}): {}",
                r.name,
                r.country,
                r.safeguard.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// The parts of a notice. Text is plain: each writer escapes it for its format.
enum Block {
    Heading(usize, String),
    Paragraph(String),
    List(Vec<String>),
    Table {
        head: Vec<&'static str>,
        rows: Vec<Vec<String>>,
    },
}

fn notice(policy: &Policy) -> Vec<Block> {
    let meta = policy.meta();
    let mut blocks = vec![
        Block::Heading(1, format!("Privacy notice: {}", meta.controller)),
        Block::Paragraph(format!(
            "{} ({}) decides why and how the personal data described here is processed: \
             it is the controller of that data. This notice is generated from policy version {}.",
            meta.controller, meta.controller_address, meta.version
        )),
        Block::Heading(2, "The data we process".to_owned()),
    ];

    for (_, category) in policy.categories() {
        blocks.push(Block::Heading(3, category.name.clone()));
        blocks.push(Block::Paragraph(category.description.clone()));
        let recipients: Vec<&str> = category
            .recipients
            .iter()
            .filter_map(|id| policy.recipient(id))
            .map(|r| r.name.as_str())
            .collect();
        let mut facts = vec![
            format!("About: {}", subject_labels(category)),
            format!("Where it comes from: {}", category.source),
            format!(
                "Data types (fideslang): {}",
                category.fides_categories.join(", ")
            ),
            if recipients.is_empty() {
                format!("Shared with: nobody outside {}", meta.controller)
            } else {
                format!("Shared with: {}", recipients.join("; "))
            },
            format!(
                "Kept for: {} {}",
                category.retention,
                category.retention_starts.label()
            ),
        ];
        if let Some(roles) = &category.access_roles {
            let who: Vec<&str> = roles.iter().map(|r| r.label()).collect();
            facts.push(if who.is_empty() {
                "Who can open it: nobody through the App or its tools; only in answer to a request"
                    .to_owned()
            } else {
                format!(
                    "Who can open it: {}; every access is recorded",
                    who.join(", ")
                )
            });
        }
        if category.archive_exempt {
            facts.push(
                "May be kept longer where needed for archiving in the public interest.".to_owned(),
            );
        }
        if category.anonymous {
            facts.push(
                "Anonymous from the outset: it is never linked to you or any other person."
                    .to_owned(),
            );
        }
        blocks.push(Block::List(facts));
        let rows = category
            .purposes
            .iter()
            .filter_map(|id| Some((policy.purpose(id)?, category.rule_for(id)?)))
            .map(|(purpose, rule)| {
                let consent = match rule.consent {
                    ConsentRule::NotNeeded => "Not needed",
                    ConsentRule::Standing => "Asked for once; you can withdraw it at any time",
                    ConsentRule::SingleUse => "Asked for on each occasion",
                };
                vec![
                    purpose.name.clone(),
                    rule.basis.label().to_owned(),
                    consent.to_owned(),
                ]
            })
            .collect();
        blocks.push(Block::Table {
            head: vec!["Purpose", "Lawful basis", "Your consent"],
            rows,
        });
    }

    blocks.push(Block::Heading(2, "Why we use it".to_owned()));
    let rows = policy
        .purposes()
        .map(|(id, purpose)| {
            let used_by: Vec<&str> = policy
                .categories()
                .filter(|(_, c)| c.purposes.iter().any(|p| p == id))
                .map(|(_, c)| c.name.as_str())
                .collect();
            vec![
                purpose.name.clone(),
                purpose.description.clone(),
                used_by.join(", "),
            ]
        })
        .collect();
    blocks.push(Block::Table {
        head: vec!["Purpose", "What it means", "Data used"],
        rows,
    });

    blocks.push(Block::Heading(2, "Who receives it".to_owned()));
    let rows = policy
        .recipients()
        .map(|(_, r)| {
            let safeguard = match (&r.safeguard, r.is_third_country()) {
                (Some(safeguard), _) => safeguard.clone(),
                (None, false) => "Not needed (UK or EEA)".to_owned(),
                (None, true) => String::new(),
            };
            vec![
                r.name.clone(),
                r.kind.label().to_owned(),
                r.country.clone(),
                safeguard,
                r.description.clone(),
            ]
        })
        .collect();
    blocks.push(Block::Table {
        head: vec![
            "Recipient",
            "Role",
            "Country",
            "Transfer safeguard",
            "What they do",
        ],
        rows,
    });

    blocks.push(Block::Heading(
        2,
        "Transfers outside the UK and EEA".to_owned(),
    ));
    let abroad: Vec<String> = policy
        .recipients()
        .filter(|(_, r)| r.is_third_country())
        .map(|(_, r)| {
            format!(
                "{} ({}): {}",
                r.name,
                r.country,
                r.safeguard.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if abroad.is_empty() {
        blocks.push(Block::Paragraph(
            "We do not transfer personal data outside the UK and EEA.".to_owned(),
        ));
    } else {
        blocks.push(Block::Paragraph(
            "These recipients are outside the UK and EEA; each transfer relies on the safeguard named:".to_owned(),
        ));
        blocks.push(Block::List(abroad));
    }

    blocks.push(Block::Heading(2, "How long we keep it".to_owned()));
    let mut keeping = format!(
        "Unless a period is given for the data above, we keep data for {} {} and then erase it.",
        meta.default_retention,
        meta.retention_starts.label()
    );
    if policy
        .categories()
        .any(|(_, c)| c.retention_starts == RetentionStart::LastEngagement)
    {
        keeping.push_str(" Where a period runs from your last engagement, it starts again each time you engage with us.");
    }
    blocks.push(Block::Paragraph(keeping));

    blocks.push(Block::Heading(2, "Your rights".to_owned()));
    blocks.push(Block::List(vec![
        "Access: ask for a copy of the personal data we hold about you.".to_owned(),
        "Rectification: ask us to correct data that is wrong or incomplete.".to_owned(),
        "Erasure: ask us to erase your data.".to_owned(),
        "Restriction and objection: ask us to limit or stop processing; you can object to marketing at any time and we will stop.".to_owned(),
        "Portability: receive the data you gave us in a portable, machine-readable format.".to_owned(),
        "Consent: where we rely on your consent, withdraw it at any time; this does not affect processing before you withdrew it.".to_owned(),
    ]));
    let mut how = format!(
        "To make a request, write to {}, {}",
        meta.controller, meta.controller_address
    );
    if let Some(email) = &meta.contact_email {
        let _ = write!(how, ", or email {email}");
    }
    let _ = write!(
        how,
        ". We answer within {} working days (not counting bank holidays in {}) and confirm by email or letter.",
        meta.request_deadline_working_days,
        meta.jurisdiction.label()
    );
    blocks.push(Block::Paragraph(how));
    blocks.push(Block::Paragraph(
        "If you are unhappy with how we handle your data, you can complain to the Information Commissioner's Office (ico.org.uk).".to_owned(),
    ));
    blocks
}

impl Block {
    fn write_markdown(&self, out: &mut String) {
        match self {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {}", "#".repeat(*level), md_escape(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "{}", md_escape(text));
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(out, "- {}", md_escape(item));
                }
            }
            Block::Table { head, rows } => {
                let _ = writeln!(out, "| {} |", head.join(" | "));
                let _ = writeln!(out, "|{}", " --- |".repeat(head.len()));
                for row in rows {
                    let cells: Vec<String> = row.iter().map(|cell| md_escape(cell)).collect();
                    let _ = writeln!(out, "| {} |", cells.join(" | "));
                }
            }
        }
    }

    fn write_html(&self, out: &mut String) {
        match self {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", html_escape(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "<p>{}</p>", html_escape(text));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", html_escape(item));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { head, rows } => {
                out.push_str("<table>\n<thead><tr>");
                for cell in head {
                    let _ = write!(out, "<th scope=\"col\">{}</th>", html_escape(cell));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for cell in row {
                        let _ = write!(out, "<td>{}</td>", html_escape(cell));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table>\n");
            }
        }
    }
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes text so Markdown shows it literally: no emphasis, links, table breaks or raw
/// HTML from policy text, and no line that a renderer would read as a list or heading.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' | '\n' => out.push(' '),
            _ => out.push(c),
        }
    }
    // A leading "-", "+", "=" or "1." would start a list or underline a heading.
    let marker_end = match out.find(|c: char| !c.is_ascii_digit()) {
        Some(0) if out.starts_with(['-', '+', '=']) => Some(0),
        Some(digits) if digits > 0 && out[digits..].starts_with(['.', ')']) => Some(digits),
        _ => None,
    };
    if let Some(at) = marker_end {
        out.insert(at, '\\');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escaping_keeps_text_literal() {
        assert_eq!(md_escape("a|b *c* <d>"), "a\\|b \\*c\\* &lt;d&gt;");
        assert_eq!(md_escape("- not a list"), "\\- not a list");
        assert_eq!(md_escape("2018. A year"), "2018\\. A year");
        assert_eq!(md_escape("e.g. 6 years"), "e.g. 6 years");
        assert_eq!(md_escape("two\nlines"), "two lines");
    }

    #[test]
    fn html_escaping_covers_attributes_too() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
