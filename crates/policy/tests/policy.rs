#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_policy::render::{article30_csv, notice_html, notice_markdown, render_to_dir};
use steward_policy::{
    AccessRole, ConsentRule, Diagnostic, LawfulBasis, Policy, Retention, RetentionStart,
    RetentionUnit, Severity, UseError, UseRule, load, parse,
};

const DEFAULT_TOML: &str = include_str!("../../../policy/default.toml");

/// A small valid policy; tests change one line of it and expect a diagnostic there.
/// Line numbers are written beside the lines that tests refer to.
const BASE: &str = r#"[policy]
version = "t1"
controller = "Example Ltd"
controller_address = "1 High Street, Tamworth"
default_retention = "6 years"
request_deadline_working_days = 10
jurisdiction = "england-and-wales"

[purposes.provision]
name = "Providing the service"
description = "So that it works."
fides_data_use = "essential.service"

[purposes.marketing]
name = "Marketing"
description = "Telling you about offers."
fides_data_use = "marketing.communications"

[recipients.hosting]
name = "Host"
kind = "processor"
country = "GB"
description = "Runs our servers."

[categories.contact]
name = "Contact details"
description = "Email address."
fides_categories = ["user.contact.email"]
subjects = ["contact"]
source = "Web forms"
lawful_basis = "legitimate_interest"
consent_required = false
purposes = ["provision", "marketing"]
purpose_basis = { marketing = "consent" }
recipients = ["hosting"]
"#;
// Lines: 2 version, 5 default_retention, 22 country, 25 [categories.contact],
// 28 fides_categories, 30 source, 31 lawful_basis, 32 consent_required, 33 purposes,
// 34 purpose_basis, 35 recipients.

/// BASE with one exact piece of text replaced (which must be there).
fn base_with(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "BASE does not contain {old:?}");
    BASE.replacen(old, new, 1)
}

fn errors_of(source: &str) -> Vec<Diagnostic> {
    match parse(source, "test.toml") {
        Ok(checked) => panic!(
            "expected errors, got a policy with warnings {:?}",
            checked.warnings
        ),
        Err(diagnostics) => diagnostics
            .into_iter()
            .filter(Diagnostic::is_error)
            .collect(),
    }
}

/// The only error of `source`, as (line, column, message).
fn only_error(source: &str) -> (usize, usize, String) {
    let errors = errors_of(source);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let e = &errors[0];
    assert_eq!(e.file, "test.toml");
    (e.line, e.column, e.message.clone())
}

fn warnings_of(source: &str) -> Vec<Diagnostic> {
    match parse(source, "test.toml") {
        Ok(checked) => checked.warnings,
        Err(diagnostics) => panic!("expected a policy, got {diagnostics:#?}"),
    }
}

// ----- the shipped policy -----

#[test]
fn default_policy_parses_without_errors_and_warns_only_about_privacy_shield() {
    let checked = parse(DEFAULT_TOML, "policy/default.toml").unwrap_or_else(|d| panic!("{d:#?}"));
    let warnings = checked.warnings;
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    let shield_lines: Vec<usize> = DEFAULT_TOML
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("safeguard = \"EU-US Privacy Shield\""))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(shield_lines.len(), 2);
    for (warning, line) in warnings.iter().zip(shield_lines) {
        assert_eq!(warning.severity, Severity::Warning);
        assert_eq!((warning.line, warning.column), (line, 13));
        assert!(
            warning.message.contains("16 July 2020"),
            "{}",
            warning.message
        );
        assert!(warning.message.contains("C-311/18"), "{}", warning.message);
        assert!(
            warning.message.contains("Schrems II"),
            "{}",
            warning.message
        );
    }
}

#[test]
fn default_policy_has_the_statement_contents() {
    let policy = Policy::default_policy();
    assert_eq!(policy.version(), "2026-11-01");
    assert_eq!(policy.deadline_working_days(), 10);
    assert_eq!(policy.meta().controller, "Pure Cloud Solutions Ltd");
    for id in [
        "contact_details",
        "web_analytics",
        "account_credentials",
        "traffic_data",
        "business_contacts",
        "device_contacts",
        "photos_media",
        "usage_statistics",
        "chat",
        "call_recordings",
        "marketing_preferences",
        "credit_checks",
    ] {
        assert!(policy.category(id).is_some(), "missing category {id}");
    }
    for id in [
        "provision",
        "identification",
        "credit_check",
        "administration",
        "research_statistics",
        "profiling",
        "marketing",
        "fraud_prevention",
        "billing",
        "service_improvement",
    ] {
        assert!(policy.purpose(id).is_some(), "missing purpose {id}");
    }
    assert!(policy.category("usage_statistics").unwrap().anonymous);
    // Recordings are "handled confidentially": operators and the DPO play them back.
    let recordings = policy.category("call_recordings").unwrap();
    assert_eq!(
        recordings.access_roles.as_deref(),
        Some(&[AccessRole::Operator, AccessRole::Dpo][..])
    );
    assert_eq!(recordings.allows_role("operator"), Some(true));
    assert_eq!(recordings.allows_role("tenant-admin"), Some(false));
    assert_eq!(recordings.allows_role("subject"), Some(false));
    assert_eq!(policy.category("chat").unwrap().allows_role("dpo"), None);
    let mailchimp = policy.recipient("mailchimp").unwrap();
    assert_eq!(mailchimp.country, "US");
    assert!(mailchimp.is_third_country());
    assert_eq!(
        policy
            .recipient("processing_centre_in")
            .unwrap()
            .safeguard
            .as_deref(),
        Some("UK IDTA")
    );
}

#[test]
fn iteration_follows_declaration_order_not_alphabetical_order() {
    let policy = Policy::default_policy();
    let categories: Vec<&str> = policy.categories().map(|(id, _)| id).collect();
    assert_eq!(categories.first(), Some(&"contact_details"));
    assert_eq!(categories.last(), Some(&"rights_requests"));
    let purposes: Vec<&str> = policy.purposes().map(|(id, _)| id).take(3).collect();
    assert_eq!(purposes, ["provision", "identification", "credit_check"]);
    // The JSON the core serves keeps the same order.
    let json = serde_json::to_string(&policy).unwrap();
    assert!(json.find("\"contact_details\"").unwrap() < json.find("\"web_analytics\"").unwrap());
}

// ----- syntax and type errors carry the TOML crate's position -----

#[test]
fn syntax_error_is_located() {
    let (line, column, message) = only_error(&base_with("version = \"t1\"", "version = \"t1"));
    assert_eq!((line, column), (2, 14), "{message}");
}

#[test]
fn duplicate_table_is_located() {
    let source = format!("{BASE}\n[purposes.marketing]\nname = \"Again\"\n");
    let (line, column, message) = only_error(&source);
    assert_eq!((line, column), (37, 11), "{message}");
    assert!(
        message.contains("duplicate") || message.contains("redefin"),
        "{message}"
    );
}

#[test]
fn unknown_field_is_located() {
    let (line, column, message) = only_error(&base_with(
        "source = \"Web forms\"",
        "sauce = \"Web forms\"",
    ));
    assert_eq!((line, column), (30, 1), "{message}");
    assert!(message.contains("unknown field `sauce`"), "{message}");
}

#[test]
fn wrong_type_is_located() {
    let (line, column, message) = only_error(&base_with(
        "consent_required = false",
        "consent_required = \"no\"",
    ));
    assert_eq!((line, column), (32, 20), "{message}");
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn unknown_enum_value_is_located() {
    let (line, column, message) = only_error(&base_with(
        "\"legitimate_interest\"",
        "\"legitimate_interests\"",
    ));
    assert_eq!((line, column), (31, 16), "{message}");
    assert!(message.contains("unknown variant"), "{message}");
}

#[test]
fn missing_field_is_located_at_its_table() {
    let (line, column, message) = only_error(&base_with("source = \"Web forms\"", "# no source"));
    assert_eq!(line, 25, "{message}");
    assert_eq!(column, 1, "{message}");
    assert!(message.contains("missing field `source`"), "{message}");
}

// ----- semantic errors point at the offending value -----

#[test]
fn unknown_purpose_reference_is_located() {
    let (line, column, message) = only_error(&base_with("[\"provision\",", "[\"provison\","));
    assert_eq!((line, column), (33, 13), "{message}");
    assert!(
        message.contains("unknown purpose \"provison\""),
        "{message}"
    );
    assert!(message.contains("provision, marketing"), "{message}");
}

#[test]
fn unknown_recipient_reference_is_located() {
    let (line, column, message) = only_error(&base_with(
        "recipients = [\"hosting\"]",
        "recipients = [\"hostinq\"]",
    ));
    assert_eq!((line, column), (35, 15), "{message}");
    assert!(
        message.contains("unknown recipient \"hostinq\""),
        "{message}"
    );
}

#[test]
fn bad_retention_is_located() {
    let (line, column, message) = only_error(&base_with("\"6 years\"", "\"6 yrs\""));
    assert_eq!((line, column), (5, 21), "{message}");
    assert!(message.contains("\"6 yrs\""), "{message}");
}

#[test]
fn consent_required_must_agree_with_the_basis() {
    let (line, column, message) = only_error(&base_with(
        "consent_required = false",
        "consent_required = true",
    ));
    assert_eq!((line, column), (32, 20), "{message}");
    assert!(message.contains("legitimate_interest"), "{message}");
}

#[test]
fn transfer_outside_uk_and_eea_needs_a_safeguard() {
    let (line, column, message) = only_error(&base_with("country = \"GB\"", "country = \"US\""));
    assert_eq!((line, column), (22, 11), "{message}");
    assert!(message.contains("safeguard"), "{message}");
    // An EEA country needs none.
    assert!(parse(&base_with("country = \"GB\"", "country = \"IE\""), "t").is_ok());
}

#[test]
fn country_must_be_an_iso_code() {
    let (line, column, message) = only_error(&base_with("country = \"GB\"", "country = \"UK\""));
    assert_eq!((line, column), (22, 11), "{message}");
    assert!(message.contains("\"GB\""), "{message}");
}

#[test]
fn single_use_consent_needs_a_consent_basis() {
    let (line, column, message) = only_error(&base_with(
        "purpose_basis = { marketing = \"consent\" }",
        "single_use_consent = true",
    ));
    assert_eq!((line, column), (34, 22), "{message}");
}

#[test]
fn purpose_basis_must_name_a_purpose_of_the_category() {
    let source = base_with(
        "purposes = [\"provision\", \"marketing\"]",
        "purposes = [\"provision\"]",
    );
    let (line, column, message) = only_error(&source);
    assert_eq!((line, column), (34, 19), "{message}");
}

#[test]
fn empty_and_duplicate_lists_are_errors() {
    // The purpose_basis entry for "marketing" is also reported, as it no longer fits.
    let errors = errors_of(&base_with("[\"provision\", \"marketing\"]", "[]"));
    assert_eq!((errors[0].line, errors[0].column), (33, 12));
    assert_eq!(errors[0].message, "purposes must not be empty");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let (line, column, message) = only_error(&base_with(
        "[\"provision\", \"marketing\"]",
        "[\"provision\", \"marketing\", \"provision\"]",
    ));
    assert_eq!((line, column), (33, 39), "{message}");
    assert!(message.contains("duplicate"), "{message}");
}

#[test]
fn a_policy_without_categories_is_an_error() {
    let without = BASE
        .split("[categories.contact]")
        .next()
        .unwrap()
        .to_owned();
    let (line, column, message) =
        only_error(&without.replace("recipients.hosting", "recipients.unused"));
    assert_eq!((line, column), (1, 1), "{message}");
    assert!(message.contains("categories"), "{message}");
    // An empty [categories] table is reported where it is written.
    let empty = format!(
        "{}[categories]\n",
        without.replace("recipients.hosting", "recipients.unused")
    );
    let (line, _, message) = only_error(&empty);
    assert_eq!(line, 25, "{message}");
}

#[test]
fn all_semantic_errors_are_reported_in_file_order() {
    let source = base_with("\"6 years\"", "\"6 yrs\"")
        .replacen("consent_required = false", "consent_required = true", 1)
        .replacen("recipients = [\"hosting\"]", "recipients = [\"nobody\"]", 1);
    let errors = errors_of(&source);
    let places: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(places, [(5, 21), (32, 20), (35, 15)], "{errors:#?}");
    let rendered = errors[0].to_string();
    assert!(
        rendered.starts_with("test.toml:5:21: error: "),
        "{rendered}"
    );
}

#[test]
fn anonymous_data_cannot_count_from_a_persons_engagement() {
    let anonymous = base_with(
        "recipients = [\"hosting\"]",
        "recipients = [\"hosting\"]\nanonymous = true",
    );
    let (line, column, message) = only_error(&anonymous);
    assert_eq!((line, column), (36, 13), "{message}");
    let fixed = anonymous.replacen(
        "anonymous = true",
        "anonymous = true\nretention_starts = \"collection\"",
        1,
    );
    assert!(
        parse(&fixed, "t")
            .unwrap()
            .policy
            .category("contact")
            .unwrap()
            .anonymous
    );
}

#[test]
fn ids_must_be_snake_case() {
    let (line, column, _) = only_error(
        &base_with("[purposes.provision]", "[purposes.Provision]").replacen(
            "[\"provision\", \"marketing\"]",
            "[\"Provision\", \"marketing\"]",
            1,
        ),
    );
    assert_eq!((line, column), (9, 11));
}

// ----- warnings -----

#[test]
fn the_base_policy_is_clean() {
    assert_eq!(warnings_of(BASE), []);
}

#[test]
fn privacy_shield_is_flagged_where_it_is_written() {
    let source = base_with(
        "country = \"GB\"",
        "country = \"US\"\nsafeguard = \"US Privacy Shield\"",
    );
    let warnings = warnings_of(&source);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!((warnings[0].line, warnings[0].column), (23, 13));
    assert!(warnings[0].message.contains("Schrems II"));
}

#[test]
fn unused_recipient_and_purpose_are_flagged() {
    let source = format!(
        "{BASE}\n[recipients.spare]\nname = \"Spare\"\nkind = \"supplier\"\ncountry = \"GB\"\ndescription = \"d\"\n\n\
         [purposes.spare]\nname = \"Spare\"\ndescription = \"d\"\nfides_data_use = \"essential\"\n"
    );
    let places: Vec<(usize, usize, bool)> = warnings_of(&source)
        .iter()
        .map(|w| (w.line, w.column, w.message.contains("no category uses it")))
        .collect();
    assert_eq!(places, [(37, 13, true), (43, 11, true)]);
}

#[test]
fn consent_basis_with_every_purpose_moved_away_is_flagged() {
    let source = base_with("\"legitimate_interest\"", "\"consent\"")
        .replacen("consent_required = false", "consent_required = true", 1)
        .replacen(
            "{ marketing = \"consent\" }",
            "{ marketing = \"contract\", provision = \"contract\" }",
            1,
        );
    let warnings = warnings_of(&source);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!((warnings[0].line, warnings[0].column), (31, 16));
}

#[test]
fn unknown_fideslang_names_are_flagged() {
    let source = base_with("\"user.contact.email\"", "\"user.contact.emial\"").replacen(
        "\"essential.service\"",
        "\"functional.service.improvement\"",
        1,
    );
    let places: Vec<(usize, usize)> = warnings_of(&source)
        .iter()
        .map(|w| (w.line, w.column))
        .collect();
    assert_eq!(places, [(12, 18), (28, 21)]);
}

// ----- queries -----

#[test]
fn check_use_gives_basis_and_consent_rule() {
    let policy = Policy::default_policy();
    assert_eq!(
        policy.check_use("contact_details", "answer_enquiries"),
        Ok(UseRule {
            basis: LawfulBasis::LegitimateInterest,
            consent: ConsentRule::NotNeeded
        })
    );
    assert_eq!(
        policy.check_use("contact_details", "marketing"),
        Ok(UseRule {
            basis: LawfulBasis::Consent,
            consent: ConsentRule::Standing
        })
    );
    assert_eq!(
        policy.check_use("contact_details", "billing"),
        Ok(UseRule {
            basis: LawfulBasis::Contract,
            consent: ConsentRule::NotNeeded
        })
    );
    assert_eq!(
        policy.check_use("device_contacts", "provision"),
        Ok(UseRule {
            basis: LawfulBasis::Consent,
            consent: ConsentRule::Standing
        })
    );
    assert_eq!(
        policy.check_use("credit_checks", "credit_check"),
        Ok(UseRule {
            basis: LawfulBasis::Consent,
            consent: ConsentRule::SingleUse
        })
    );
    assert_eq!(
        policy
            .check_use("traffic_data", "fraud_prevention")
            .map(|r| r.basis),
        Ok(LawfulBasis::LegitimateInterest)
    );
}

#[test]
fn check_use_refuses_undeclared_uses_with_a_useful_message() {
    let policy = Policy::default_policy();
    let error = policy.check_use("traffic_data", "marketing").unwrap_err();
    assert!(matches!(error, UseError::UndeclaredPurpose { .. }));
    assert_eq!(
        error.to_string(),
        "purpose marketing is not declared for category traffic_data \
         (declared: provision, billing, security, fraud_prevention)"
    );
    let error = policy.check_use("shoe_sizes", "provision").unwrap_err();
    assert_eq!(error.to_string(), "unknown category shoe_sizes");
    assert!(
        serde_json::to_string(&error)
            .unwrap()
            .contains("\"error\":\"unknown_category\"")
    );
}

#[test]
fn consentable_purposes_are_those_some_category_needs_consent_for() {
    let policy = Policy::default_policy();
    let ids: Vec<&str> = policy
        .consentable_purposes()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ids,
        [
            "provision",
            "credit_check",
            "research_statistics",
            "profiling",
            "marketing",
            "service_improvement"
        ]
    );
    let uses = policy.consentable_uses();
    assert!(
        uses.iter()
            .any(|u| u.category == "photos_media" && u.purpose == "provision")
    );
    assert!(uses.iter().all(|u| u.category != "traffic_data"));
    let credit = uses.iter().find(|u| u.category == "credit_checks").unwrap();
    assert_eq!(credit.consent, ConsentRule::SingleUse);
}

#[test]
fn retention_comes_from_the_category_or_the_default() {
    let policy = Policy::default_policy();
    let years = |amount| Retention {
        amount,
        unit: RetentionUnit::Years,
    };
    assert_eq!(policy.retention_for("traffic_data"), years(6));
    assert_eq!(
        policy.retention_for("web_analytics"),
        Retention {
            amount: 13,
            unit: RetentionUnit::Months
        }
    );
    assert_eq!(
        policy.retention_for("call_recordings"),
        Retention {
            amount: 90,
            unit: RetentionUnit::Days
        }
    );
    assert_eq!(policy.retention_for("no_such_category"), years(6));
    assert_eq!(
        policy.retention_starts_for("traffic_data"),
        RetentionStart::LastEngagement
    );
    assert_eq!(
        policy.retention_starts_for("credit_checks"),
        RetentionStart::Collection
    );
}

// ----- rendering -----

#[test]
fn notices_mention_every_category_and_purpose() {
    let policy = Policy::default_policy();
    let markdown = notice_markdown(&policy);
    let html = notice_html(&policy);
    for (_, category) in policy.categories() {
        assert!(
            markdown.contains(&format!("### {}", category.name)),
            "{}",
            category.name
        );
        assert!(
            html.contains(&format!("<h3>{}</h3>", category.name)),
            "{}",
            category.name
        );
    }
    for (_, purpose) in policy.purposes() {
        let escaped = purpose.name.replace('\'', "&#39;");
        assert!(markdown.contains(&purpose.name), "{}", purpose.name);
        assert!(html.contains(&escaped), "{}", purpose.name);
    }
    assert!(markdown.contains("10 working days"));
    assert!(markdown.contains("EU-US Privacy Shield"));
}

#[test]
fn html_notice_is_standalone_and_escaped() {
    let source = base_with(
        "name = \"Contact details\"",
        "name = \"Contact <script>alert(1)</script> & co\"",
    );
    let policy = parse(&source, "t").unwrap().policy;
    let html = notice_html(&policy);
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en-GB\">"));
    assert!(html.trim_end().ends_with("</html>"));
    assert!(html.contains("Contact &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
    assert!(
        !html.contains("<script"),
        "no script, injected or otherwise"
    );
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "no external assets"
    );
    let markdown = notice_markdown(&policy);
    assert!(markdown.contains("Contact &lt;script&gt;"));
}

#[test]
fn article30_csv_has_one_row_per_category_and_purpose() {
    let policy = Policy::default_policy();
    let csv_text = article30_csv(&policy);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();

    let expected: Vec<(String, String)> = policy
        .categories()
        .flat_map(|(id, c)| c.purposes.iter().map(move |p| (id.to_owned(), p.clone())))
        .collect();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r[column("category_id")].to_owned(),
                r[column("purpose_id")].to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected);

    let marketing = rows
        .iter()
        .find(|r| {
            &r[column("category_id")] == "contact_details"
                && &r[column("purpose_id")] == "marketing"
        })
        .unwrap();
    assert_eq!(&marketing[column("lawful_basis")], "Consent (Art. 6(1)(a))");
    assert_eq!(&marketing[column("consent")], "standing");
    assert!(
        marketing[column("third_country_transfers")]
            .contains("MailChimp (US): EU-US Privacy Shield")
    );
    assert_eq!(&marketing[column("retention")], "6 years");
    assert!(
        rows.iter()
            .all(|r| &r[column("controller")] == "Pure Cloud Solutions Ltd")
    );
    // A field with a comma and quotes survives the round trip.
    let tricky = base_with(
        "source = \"Web forms\"",
        "source = \"Forms, \\\"quotes\\\" and\\nnewlines\"",
    );
    let csv_text = article30_csv(&parse(&tricky, "t").unwrap().policy);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!(&row[6], "Forms, \"quotes\" and\nnewlines");
}

#[test]
fn render_to_dir_writes_the_three_documents() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site");
    let written = render_to_dir(&Policy::default_policy(), &out).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["privacy-notice.md", "privacy-notice.html", "article30.csv"]
    );
    for path in written {
        assert!(
            std::fs::metadata(&path).unwrap().len() > 100,
            "{}",
            path.display()
        );
    }
}

// ----- loading -----

#[test]
fn load_reads_a_file_and_names_it_in_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, base_with("\"6 years\"", "\"6 yrs\"")).unwrap();
    let errors = load(&path).unwrap_err();
    assert_eq!(errors[0].file, path.display().to_string());
    assert_eq!((errors[0].line, errors[0].column), (5, 21));

    std::fs::write(&path, BASE).unwrap();
    assert!(load(&path).is_ok());

    let missing = load(&dir.path().join("absent.toml")).unwrap_err();
    assert!(
        missing[0].message.contains("cannot read"),
        "{}",
        missing[0].message
    );
}

#[test]
fn access_roles_are_checked_where_they_are_written() {
    // Line 36, after recipients (line 35).
    let with = |roles: &str| {
        base_with(
            "recipients = [\"hosting\"]\n",
            &format!("recipients = [\"hosting\"]\naccess_roles = {roles}\n"),
        )
    };
    let policy = parse(
        &with(r#"["operator", "dpo", "tenant-admin", "subject"]"#),
        "test.toml",
    )
    .unwrap()
    .policy;
    assert_eq!(
        policy.category("contact").unwrap().access_roles,
        Some(vec![
            AccessRole::Operator,
            AccessRole::Dpo,
            AccessRole::TenantAdmin,
            AccessRole::Subject
        ])
    );
    assert_eq!(
        policy.category("contact").unwrap().allows_role("dpo"),
        Some(true)
    );

    let (line, column, message) = only_error(&with(r#"["operator", "supervisor"]"#));
    assert_eq!((line, column), (36, 29), "{message}");
    assert!(message.contains("unknown role \"supervisor\""), "{message}");
    assert!(
        message.contains("subject, tenant-admin, operator, dpo"),
        "{message}"
    );

    let (line, column, message) = only_error(&with(r#"["dpo", "dpo"]"#));
    assert_eq!((line, column), (36, 24), "{message}");
    assert!(
        message.contains("duplicate entry \"dpo\" in access_roles"),
        "{message}"
    );

    // Roles are written as accounts name them, not in snake case.
    let (line, _, message) = only_error(&with(r#"["tenant_admin"]"#));
    assert_eq!(line, 36, "{message}");

    // A wrong type stops parsing, at the value.
    let errors = errors_of(&with(r#""operator""#));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].line, 36, "{errors:#?}");

    // An empty list is allowed, with a warning.
    let warnings = warnings_of(&with("[]"));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!((warnings[0].line, warnings[0].column), (36, 16));
    assert!(
        warnings[0].message.contains("no account"),
        "{}",
        warnings[0].message
    );
    let policy = parse(&with("[]"), "test.toml").unwrap().policy;
    assert_eq!(
        policy.category("contact").unwrap().allows_role("operator"),
        Some(false)
    );
}

// ----- how the access bundle reads -----

#[test]
fn time_zone_defaults_to_london_and_an_unknown_one_is_located() {
    let p = parse(BASE, "t").unwrap().policy;
    assert_eq!(p.meta().time_zone, "Europe/London");
    let p = parse(
        &base_with(
            "jurisdiction = \"england-and-wales\"",
            "jurisdiction = \"england-and-wales\"\ntime_zone = \"Europe/Dublin\"",
        ),
        "t",
    )
    .unwrap()
    .policy;
    assert_eq!(p.meta().time_zone, "Europe/Dublin");
    let (line, column, message) = only_error(&base_with(
        "jurisdiction = \"england-and-wales\"",
        "jurisdiction = \"england-and-wales\"\ntime_zone = \"Europe/Tamworth\"",
    ));
    assert_eq!((line, column), (8, 13), "{message}");
    assert!(message.contains("\"Europe/Tamworth\""), "{message}");
}

#[test]
fn other_parties_takes_show_mask_or_redact() {
    let p = parse(BASE, "t").unwrap().policy;
    assert_eq!(
        p.category("contact").unwrap().other_parties,
        steward_policy::OtherParties::Show,
        "show by default"
    );
    let p = parse(
        &base_with(
            "recipients = [\"hosting\"]\n",
            "recipients = [\"hosting\"]\nother_parties = \"mask\"\n",
        ),
        "t",
    )
    .unwrap()
    .policy;
    assert_eq!(
        p.category("contact").unwrap().other_parties,
        steward_policy::OtherParties::Mask
    );
    let (line, _, message) = only_error(&base_with(
        "recipients = [\"hosting\"]\n",
        "recipients = [\"hosting\"]\nother_parties = \"hide\"\n",
    ));
    assert_eq!(line, 36, "{message}");
    assert!(
        message.contains("hide") || message.contains("unknown variant"),
        "{message}"
    );
}

#[test]
fn field_headings_are_named_in_snake_case_and_read_on_one_line() {
    let with = |table: &str| format!("{BASE}\n[categories.contact.fields.subjects]\n{table}\n");
    let p = parse(&with("email = \"Email address\""), "t")
        .unwrap()
        .policy;
    assert_eq!(
        p.category("contact").unwrap().fields["subjects"]["email"],
        "Email address"
    );
    for (bad, said) in [
        ("Email = \"Email address\"", "not a field name"),
        ("email = \"\"", "email"),
        ("email = \"two\\nlines\"", "email"),
    ] {
        let errors = errors_of(&with(bad));
        assert_eq!(errors.len(), 1, "{bad}: {errors:#?}");
        assert_eq!(errors[0].line, 38, "{bad}: {errors:#?}");
        assert!(
            errors[0].message.contains(said),
            "{bad}: {}",
            errors[0].message
        );
    }
}
