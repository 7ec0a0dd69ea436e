//! The rendered texts read as prose: no word said twice in a row ("6 years from
//! from your last engagement", "the the"), in any format the notice is written in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_policy::render::{article30_csv, notice_body_html, notice_html, notice_markdown};
use steward_policy::{Policy, parse};

/// Every place where the same word (letters, digits and apostrophes, compared
/// without regard to case, emphasis marks aside) stands twice in a row on one
/// line with only white space between, with the words around it. Words
/// separated by punctuation ("data. Data", a table's `|`) or by a line break (a
/// heading and its first paragraph) are not doubled.
fn doubled_words(text: &str) -> Vec<String> {
    let word = |w: &str| -> Option<String> {
        let w = w.trim_matches(['*', '_', '`']);
        (w.chars().all(|c| c.is_alphanumeric() || c == '\'') && w.chars().any(char::is_alphabetic))
            .then(|| w.to_lowercase())
    };
    let mut found = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, pair) in words.windows(2).enumerate() {
            if let (Some(a), Some(b)) = (word(pair[0]), word(pair[1]))
                && a == b
            {
                found.push(words[i.saturating_sub(4)..(i + 6).min(words.len())].join(" "));
            }
        }
    }
    found
}

/// Text of an HTML document with every tag a boundary (cells and headings do
/// not run into each other).
fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push_str(" | ");
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&#39;", "'").replace("&amp;", "&")
}

/// The text of every cell of the Article 30 record, one cell per line.
fn csv_text(csv_doc: &str) -> String {
    let mut reader = csv::Reader::from_reader(csv_doc.as_bytes());
    let mut out = reader
        .headers()
        .unwrap()
        .iter()
        .collect::<Vec<_>>()
        .join("\n|\n");
    for row in reader.records() {
        for cell in row.unwrap().iter() {
            out.push_str("\n|\n");
            out.push_str(cell);
        }
    }
    out
}

/// Every rendered text of a policy, by format.
fn rendered(policy: &Policy) -> Vec<(&'static str, String)> {
    vec![
        ("privacy-notice.md", notice_markdown(policy)),
        ("privacy-notice.html", html_text(&notice_html(policy))),
        ("notice body (HTML)", html_text(&notice_body_html(policy))),
        ("article30.csv", csv_text(&article30_csv(policy))),
    ]
}

#[test]
fn the_checker_finds_doubled_words() {
    assert_eq!(
        doubled_words("kept for 6 years from from your last engagement"),
        ["kept for 6 years from from your last engagement"]
    );
    assert_eq!(doubled_words("The the end").len(), 1);
    assert_eq!(doubled_words("a list of **of** things").len(), 1);
    assert!(doubled_words("we keep data. Data you gave | to | to").is_empty());
    assert!(doubled_words("### Call recordings\nRecordings of calls").is_empty());
    assert!(doubled_words("Art. 6(1)(a) (a)").is_empty());
    assert!(doubled_words("one two three").is_empty());
}

#[test]
fn the_default_notice_says_no_word_twice_in_a_row() {
    let policy = Policy::default_policy();
    let mut found = Vec::new();
    for (format, text) in rendered(&policy) {
        assert!(text.len() > 1000, "{format} is too short to be the notice");
        found.extend(
            doubled_words(&text)
                .into_iter()
                .map(|d| format!("{format}: {d}")),
        );
    }
    assert!(found.is_empty(), "doubled words:\n{}", found.join("\n"));
}

/// Both retention starts as the policy-wide default (categories of the default
/// policy use each one too): the labels start with "from", and the sentences
/// they go into must not say it again.
#[test]
fn retention_starts_read_once_in_every_sentence() {
    let default_toml = include_str!("../../../policy/default.toml");
    let line = "\nretention_starts = \"last_engagement\"\n";
    assert!(
        default_toml.contains(line),
        "the default policy's [policy] start"
    );
    for start in ["last_engagement", "collection"] {
        let source = default_toml.replacen(line, &format!("\nretention_starts = \"{start}\"\n"), 1);
        let policy = parse(&source, "policy/default.toml")
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .policy;
        for (format, text) in rendered(&policy) {
            let d = doubled_words(&text);
            assert!(d.is_empty(), "{start}, {format}: {d:#?}");
        }
    }
}
