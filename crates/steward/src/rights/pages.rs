//! The pages a person opens in the access bundle: `index.html` at the top of
//! the ZIP and, for a store with more rows than one page shows, numbered pages
//! under `pages/`. Plain HTML with its style inline: no scripts, no outside
//! assets, readable offline in any browser. Every value is escaped by the
//! templates (askama).
//!
//! Values are written for a person: times in the controller's time zone (the
//! policy's `time_zone`) as `YYYY-MM-DD HH:MM` with the zone's abbreviation,
//! durations in minutes and seconds, sizes in MB, flags as yes/no, codes as
//! words, categories and purposes by their names, files as links. Ids that only
//! join the machine-readable files (`Kind::Ref`) and binary content are left
//! out of the pages.

use askama::Template;
use chrono::TimeZone;
use chrono_tz::Tz;
use steward_policy::Policy;

use super::view::{Cell, Field, Kind, word};
use crate::error::{Error, Result};

/// Rows a table shows on one page; a store with more is split into pages.
pub const ROWS_PER_PAGE: usize = 1000;

/// One value as a person reads it, with the link it opens when it is a file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Shown {
    pub text: String,
    pub href: Option<String>,
}

/// How values are written for a person: the controller's time zone and the
/// policy's names for categories, purposes and recipients.
pub struct Reader<'a> {
    pub policy: &'a Policy,
    pub tz: Tz,
}

impl<'a> Reader<'a> {
    pub fn new(policy: &'a Policy) -> Result<Reader<'a>> {
        let name = &policy.meta().time_zone;
        let tz = name.parse::<Tz>().map_err(|_| {
            Error::Internal(format!(
                "policy time_zone {name:?} is not a known time zone"
            ))
        })?;
        Ok(Reader { policy, tz })
    }

    /// A stored time (Unix seconds) in the controller's time zone:
    /// `2026-03-02 09:00 GMT`.
    pub fn time(&self, secs: i64) -> String {
        match self.tz.timestamp_opt(secs, 0).single() {
            Some(t) => t.format("%Y-%m-%d %H:%M %Z").to_string(),
            None => secs.to_string(),
        }
    }

    /// The date alone, for page ranges: `2026-03-02`.
    pub fn date(&self, secs: i64) -> String {
        match self.tz.timestamp_opt(secs, 0).single() {
            Some(t) => t.format("%Y-%m-%d").to_string(),
            None => secs.to_string(),
        }
    }

    /// The fields of a view a person reads (ids and binary content are not).
    pub fn shown_fields(fields: &[Field]) -> impl Iterator<Item = (usize, &Field)> {
        fields
            .iter()
            .enumerate()
            .filter(|(_, f)| !matches!(f.kind, Kind::Ref | Kind::Base64))
    }

    /// A value as a person reads it. `prefix` leads file links from the page
    /// to the bundle's top (`""` on `index.html`, `"../"` under `pages/`).
    pub fn show(&self, kind: Kind, cell: &Cell, prefix: &str) -> Shown {
        let text = |t: String| Shown {
            text: t,
            href: None,
        };
        match (kind, cell) {
            (_, Cell::Null) => text(String::new()),
            (Kind::Time, Cell::Int(t)) => text(self.time(*t)),
            (Kind::Duration, Cell::Int(s)) => text(duration(*s)),
            (Kind::Size, Cell::Int(b)) => text(megabytes(*b)),
            (Kind::Flag, Cell::Int(n)) => text(if *n != 0 { "yes" } else { "no" }.to_owned()),
            (Kind::Json, Cell::Text(t)) => text(json_words(t)),
            (Kind::Words(words), Cell::Text(t)) => text(word(words, t).to_owned()),
            (Kind::Category, Cell::Text(t)) => text(
                self.policy
                    .category(t)
                    .map_or_else(|| t.clone(), |c| c.name.clone()),
            ),
            (Kind::Purpose, Cell::Text(t)) => text(
                self.policy
                    .purpose(t)
                    .map_or_else(|| t.clone(), |p| p.name.clone()),
            ),
            (Kind::Recipient, Cell::Text(t)) => text(
                self.policy
                    .recipient(t)
                    .map_or_else(|| t.clone(), |r| r.name.clone()),
            ),
            (Kind::File, Cell::Text(path)) => Shown {
                text: "open file".to_owned(),
                href: Some(format!("{prefix}{path}")),
            },
            (_, Cell::Int(n)) => text(n.to_string()),
            (_, Cell::Text(t)) => text(t.clone()),
            (_, Cell::Json(j)) => text(j.to_string()),
        }
    }
}

/// Seconds as a person reads them: `45 s`, `2 min 05 s`, `1 h 02 min 05 s`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s:02} s"),
        _ => format!("{h} h {m:02} min {s:02} s"),
    }
}

/// Bytes in MB (10^6 bytes), two decimals: `1.25 MB`; under 0.01 MB,
/// `under 0.01 MB` rather than a misleading `0.00 MB`.
pub fn megabytes(bytes: i64) -> String {
    if bytes > 0 && bytes < 5_000 {
        return "under 0.01 MB".to_owned();
    }
    format!("{:.2} MB", bytes as f64 / 1_000_000.0)
}

impl Table {
    /// Leaves out the columns that are empty in every row shown (the call
    /// fields a PBX did not send), so the table a person reads stays narrow.
    /// Only for a table shown whole on the index; pages keep every column.
    pub fn drop_empty_columns(&mut self) {
        let keep: Vec<bool> = (0..self.headings.len())
            .map(|i| {
                self.rows
                    .iter()
                    .any(|r| r.get(i).is_some_and(|c| !c.text.is_empty()))
            })
            .collect();
        fn marked<T>(v: Vec<T>, keep: &[bool]) -> Vec<T> {
            v.into_iter()
                .zip(keep)
                .filter_map(|(x, k)| k.then_some(x))
                .collect()
        }
        self.headings = marked(std::mem::take(&mut self.headings), &keep);
        for row in &mut self.rows {
            *row = marked(std::mem::take(row), &keep);
        }
    }
}

/// A stored list or object in words: a list of texts joined by commas, a
/// contact card by its values.
fn json_words(t: &str) -> String {
    fn words(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| words(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| words(x, out)),
            other => out.push(other.to_string()),
        }
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(v) => {
            let mut out = Vec::new();
            words(&v, &mut out);
            out.retain(|s| !s.is_empty());
            out.join(", ")
        }
        Err(_) => t.to_owned(),
    }
}

/// One table of a category's section: a store's rows, on the index or, when
/// there are more than `ROWS_PER_PAGE`, on numbered pages it links to.
#[derive(Debug, Clone)]
pub struct Table {
    pub store: String,
    pub caption: String,
    pub headings: Vec<String>,
    pub rows: Vec<Vec<Shown>>,
    pub pages: Vec<PageLink>,
    pub total: u64,
}

#[derive(Debug, Clone)]
pub struct PageLink {
    pub href: String,
    pub number: usize,
    pub rows: usize,
    /// The dates the page's rows span, when the store's rows have a time.
    pub span: Option<String>,
}

/// What the subject is told about one category, then its tables.
#[derive(Debug, Clone)]
pub struct Section {
    pub anchor: String,
    pub name: String,
    pub description: String,
    pub items: u64,
    pub purposes: Vec<(String, String)>,
    pub retention: String,
    pub source: String,
    pub recipients: Vec<String>,
    pub tables: Vec<Table>,
}

/// One line of a timeline (disclosures, consent).
#[derive(Debug, Clone)]
pub struct Event {
    pub at: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct ShownMessage {
    pub at: String,
    pub from: String,
    pub text: String,
    pub mine: bool,
    pub files: Vec<Shown>,
}

#[derive(Debug, Clone)]
pub struct ShownConversation {
    pub title: String,
    pub members: String,
    pub messages: Vec<ShownMessage>,
    /// Messages left off the page (the conversation is longer than a page):
    /// all of them are in `data/conversations.json`.
    pub more: u64,
}

#[derive(Template)]
#[template(path = "bundle/index.html")]
pub struct Index {
    pub controller: String,
    pub address: String,
    pub contact: String,
    pub generated: String,
    pub policy_version: String,
    pub time_zone: String,
    pub sections: Vec<Section>,
    pub conversations: Vec<ShownConversation>,
    pub disclosures: Vec<Event>,
    pub disclosures_more: u64,
    pub consent: Vec<Event>,
    pub consent_more: u64,
    pub rights: String,
}

#[derive(Template)]
#[template(path = "bundle/page.html")]
pub struct Page {
    pub title: String,
    pub caption: String,
    pub number: usize,
    pub of: usize,
    pub span: Option<String>,
    pub headings: Vec<String>,
    pub rows: Vec<Vec<Shown>>,
    pub prev: Option<String>,
    pub next: Option<String>,
}

pub fn render<T: Template>(t: &T) -> Result<String> {
    t.render()
        .map_err(|e| Error::Internal(format!("writing the bundle's pages: {e}")))
}

/// The file name of page `n` (from 1) of a store's table.
pub fn page_path(store: &str, n: usize) -> String {
    format!("pages/{store}-{n}.html")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_words() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(125), "2 min 05 s");
        assert_eq!(duration(3725), "1 h 02 min 05 s");
        assert_eq!(megabytes(1_250_000), "1.25 MB");
        assert_eq!(megabytes(48_044), "0.05 MB");
        assert_eq!(megabytes(275), "under 0.01 MB");
        assert_eq!(megabytes(0), "0.00 MB");
        assert_eq!(json_words(r#"["+44 20", "+44 161"]"#), "+44 20, +44 161");
    }

    #[test]
    fn columns_empty_in_every_row_are_left_out() {
        let cell = |t: &str| Shown {
            text: t.to_owned(),
            href: None,
        };
        let mut t = Table {
            store: "call_records".into(),
            caption: "Your calls".into(),
            headings: vec!["When".into(), "IP".into(), "Number".into()],
            rows: vec![
                vec![cell("2026-03-02"), cell(""), cell("+44")],
                vec![cell("2026-03-03"), cell(""), cell("")],
            ],
            pages: Vec::new(),
            total: 2,
        };
        t.drop_empty_columns();
        assert_eq!(t.headings, ["When", "Number"]);
        assert_eq!(t.rows[1], [cell("2026-03-03"), cell("")]);
    }

    #[test]
    fn times_are_local_to_the_controller() {
        let policy = steward_policy::Policy::default_policy();
        let r = Reader::new(&policy).unwrap();
        // 2026-03-02 09:00 UTC is GMT in London; 2026-07-01 09:00 UTC is BST.
        assert_eq!(r.time(1_772_442_000), "2026-03-02 09:00 GMT");
        assert_eq!(r.time(1_782_896_400), "2026-07-01 10:00 BST");
        assert_eq!(r.date(1_782_896_400), "2026-07-01");
    }
}
