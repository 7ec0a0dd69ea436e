//! Country codes, and which countries a transfer can reach without a safeguard.

/// ISO 3166-1 alpha-2 codes currently assigned (249).
const ISO_3166_ALPHA2: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM \
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS \
GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ \
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM \
PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV \
SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI \
VN VU WF WS YE YT ZA ZM ZW";

/// The United Kingdom and the European Economic Area (the 27 EU states plus Iceland,
/// Liechtenstein and Norway). UK GDPR lets data flow between them without a transfer
/// safeguard; anywhere else needs one (an adequacy regulation counts as a safeguard).
const UK_AND_EEA: &str = "GB AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL \
PT RO SK SI ES SE IS LI NO";

pub(crate) fn is_country_code(code: &str) -> bool {
    code.len() == 2 && ISO_3166_ALPHA2.split_ascii_whitespace().any(|c| c == code)
}

pub(crate) fn in_uk_or_eea(code: &str) -> bool {
    UK_AND_EEA.split_ascii_whitespace().any(|c| c == code)
}

/// Codes people write by habit that ISO spells differently.
pub(crate) fn iso_spelling_of(code: &str) -> Option<&'static str> {
    match code {
        "UK" => Some("GB"),
        "EL" => Some("GR"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_complete_and_consistent() {
        assert_eq!(ISO_3166_ALPHA2.split_ascii_whitespace().count(), 249);
        assert_eq!(UK_AND_EEA.split_ascii_whitespace().count(), 31);
        assert!(UK_AND_EEA.split_ascii_whitespace().all(is_country_code));
    }

    #[test]
    fn transfers_outside_the_uk_and_eea_are_recognised() {
        assert!(in_uk_or_eea("GB") && in_uk_or_eea("NO") && in_uk_or_eea("DE"));
        assert!(!in_uk_or_eea("US") && !in_uk_or_eea("IN") && !in_uk_or_eea("CH"));
        assert!(!is_country_code("UK") && !is_country_code("gb") && !is_country_code("GBR"));
        assert_eq!(iso_spelling_of("UK"), Some("GB"));
    }
}
