//! Option negotiation matrix (RFC 2347/2348/2349/7440).

use std::time::Duration;

use super::{cfg, data_blocks, drain, file_of, oack_options, rrq, t0};
use crate::options::{negotiate, parse_number};
use crate::{EngineConfig, Transfer};

const LEN: usize = 100_000;

/// OACK options for a request, or `None` when the transfer starts with DATA 1.
fn oack_for(opts: &[(&str, &str)], c: &EngineConfig) -> Option<Vec<(String, String)>> {
    let mut t = Transfer::new(&rrq("f", opts), file_of(LEN), c, t0());
    let first = drain(&mut t);
    assert_eq!(first.len(), 1, "exactly one first datagram");
    if t.oack_sent() {
        Some(oack_options(&first[0]))
    } else {
        assert_eq!(data_blocks(&first), vec![1]);
        None
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn no_options_no_oack_data_1_first() {
    assert_eq!(oack_for(&[], &cfg()), None);
}

#[test]
fn blksize_1468_is_acked() {
    assert_eq!(
        oack_for(&[("blksize", "1468")], &cfg()),
        Some(pairs(&[("blksize", "1468")]))
    );
}

#[test]
fn tsize_0_is_answered_with_the_file_size() {
    assert_eq!(
        oack_for(&[("tsize", "0")], &cfg()),
        Some(pairs(&[("tsize", "100000")]))
    );
}

#[test]
fn tsize_enable_is_not_acked() {
    // atftp sends `tsize\0enable\0`: ignored, so with nothing else no OACK.
    assert_eq!(oack_for(&[("tsize", "enable")], &cfg()), None);
    assert_eq!(
        oack_for(&[("tsize", "enable"), ("blksize", "1468")], &cfg()),
        Some(pairs(&[("blksize", "1468")]))
    );
}

#[test]
fn ovmf_first_rrq_gets_all_three_in_client_order() {
    let got = oack_for(
        &[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")],
        &cfg(),
    );
    assert_eq!(
        got,
        Some(pairs(&[
            ("tsize", "100000"),
            ("blksize", "1468"),
            ("windowsize", "4")
        ]))
    );
    // Order follows the client, not a fixed server order.
    let got = oack_for(
        &[("windowsize", "4"), ("blksize", "1468"), ("tsize", "0")],
        &cfg(),
    );
    assert_eq!(
        got,
        Some(pairs(&[
            ("windowsize", "4"),
            ("blksize", "1468"),
            ("tsize", "100000")
        ]))
    );
}

#[test]
fn blksize_below_8_is_ignored() {
    assert_eq!(oack_for(&[("blksize", "1")], &cfg()), None);
    assert_eq!(oack_for(&[("blksize", "7")], &cfg()), None);
    assert_eq!(
        oack_for(&[("blksize", "8")], &cfg()),
        Some(pairs(&[("blksize", "8")]))
    );
}

#[test]
fn blksize_above_max_is_clamped() {
    assert_eq!(
        oack_for(&[("blksize", "70000")], &cfg()),
        Some(pairs(&[("blksize", "65464")]))
    );
    assert_eq!(
        oack_for(&[("blksize", "99999999999999999999999")], &cfg()),
        Some(pairs(&[("blksize", "65464")]))
    );
    let small = EngineConfig {
        max_blksize: 1468,
        ..cfg()
    };
    assert_eq!(
        oack_for(&[("blksize", "8192")], &small),
        Some(pairs(&[("blksize", "1468")]))
    );
    // A nonsense config max is itself clamped into 8..=65464.
    let tiny = EngineConfig {
        max_blksize: 2,
        ..cfg()
    };
    assert_eq!(
        negotiate(&pairs(&[("blksize", "512")]), 1, &tiny).blksize,
        8
    );
}

#[test]
fn timeout_out_of_range_is_ignored() {
    assert_eq!(oack_for(&[("timeout", "0")], &cfg()), None);
    assert_eq!(oack_for(&[("timeout", "256")], &cfg()), None);
    assert_eq!(
        oack_for(&[("timeout", "255")], &cfg()),
        Some(pairs(&[("timeout", "255")]))
    );
    let n = negotiate(&pairs(&[("timeout", "6")]), 1, &cfg());
    assert_eq!(n.timeout, Duration::from_secs(6));
    assert!(n.timeout_acked);
    let n = negotiate(&pairs(&[("timeout", "0")]), 1, &cfg());
    assert_eq!(n.timeout, cfg().default_timeout);
}

#[test]
fn windowsize_is_clamped_and_zero_ignored() {
    assert_eq!(oack_for(&[("windowsize", "0")], &cfg()), None);
    assert_eq!(
        oack_for(&[("windowsize", "65535")], &cfg()),
        Some(pairs(&[("windowsize", "64")]))
    );
    let big = EngineConfig {
        max_windowsize: u16::MAX,
        ..cfg()
    };
    assert_eq!(
        oack_for(&[("windowsize", "65535")], &big),
        Some(pairs(&[("windowsize", "32768")]))
    );
}

#[test]
fn unknown_options_are_ignored() {
    assert_eq!(
        oack_for(&[("multicast", ""), ("rollover", "0")], &cfg()),
        None
    );
    assert_eq!(
        oack_for(&[("foo", "1"), ("blksize", "1024"), ("bar", "x")], &cfg()),
        Some(pairs(&[("blksize", "1024")]))
    );
}

#[test]
fn non_numeric_values_are_ignored() {
    for v in ["", "+512", "-1", " 512", "512 ", "0x200", "1e3"] {
        assert_eq!(oack_for(&[("blksize", v)], &cfg()), None, "value {v:?}");
    }
}

#[test]
fn repeated_option_first_one_wins() {
    assert_eq!(
        oack_for(&[("blksize", "1024"), ("blksize", "2048")], &cfg()),
        Some(pairs(&[("blksize", "1024")]))
    );
    // An ignored first occurrence does not block a valid second one.
    assert_eq!(
        oack_for(&[("blksize", "4"), ("blksize", "2048")], &cfg()),
        Some(pairs(&[("blksize", "2048")]))
    );
}

#[test]
fn option_names_match_case_insensitively() {
    let n = negotiate(&pairs(&[("BlkSize", "1024")]), 1, &cfg());
    assert_eq!(n.blksize, 1024);
    assert_eq!(n.oack, pairs(&[("blksize", "1024")]));
}

#[test]
fn parse_number_is_strict_decimal() {
    assert_eq!(parse_number("0"), Some(0));
    assert_eq!(parse_number("001468"), Some(1468));
    assert_eq!(parse_number("18446744073709551616"), Some(u64::MAX));
    assert_eq!(parse_number(""), None);
    assert_eq!(parse_number("enable"), None);
    assert_eq!(parse_number("١٢"), None);
}
