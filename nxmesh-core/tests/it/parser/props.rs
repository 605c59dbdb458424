//! Property tests: random nginx-like text never panics the parser, and
//! whatever parses re-parses to the same tree after formatting. The number
//! of cases is `PROPTEST_CASES` (default 2,000 here; CI sets 100,000).

use proptest::prelude::*;

use super::roundtrip;

/// Text made of the characters that matter to the tokenizer, plus words.
fn nginxish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-z_]{1,8}",
        2 => Just(" ".to_owned()),
        2 => Just(";".to_owned()),
        1 => Just("\n".to_owned()),
        1 => Just("{".to_owned()),
        1 => Just("}".to_owned()),
        1 => Just("\"".to_owned()),
        1 => Just("'".to_owned()),
        1 => Just("\\".to_owned()),
        1 => Just("#".to_owned()),
        1 => Just("$".to_owned()),
        1 => Just("${".to_owned()),
        1 => Just("(".to_owned()),
        1 => Just(")".to_owned()),
        1 => Just("\t".to_owned()),
        1 => Just("content_by_lua_block {".to_owned()),
        1 => Just("--[[".to_owned()),
        1 => Just("]]".to_owned()),
        1 => Just("é".to_owned()),
        1 => "\\PC{1,3}",
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_and_round_trips(text in nginxish()) {
        // Syntax errors are fine; a changed tree is not (roundtrip asserts).
        if let Err(e) = roundtrip(&text) {
            prop_assert!(!e.contains("round trip") && !e.contains("does not parse"), "{}", e);
        }
        // Analysis and recovery never panic either.
        let file = nxmesh_core::parser::parse_str("t", &text, &Default::default());
        prop_assert!(file.is_ok());
    }
}
