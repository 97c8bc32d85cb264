//! Label and ID queries with COSI's semantics (`resource.LabelQuery`, `resource.IDQuery`).
//!
//! - Terms of one [`LabelQuery`] are AND-ed; several queries are OR-ed (no query matches all).
//! - A missing label never matches, so an inverted term on a missing label matches.
//! - `EQUAL`, `LT`, `LTE` use the first value; `IN` any value; a term other than `EXISTS` with
//!   no value does not match. `*_NUMERIC` parse a leading integer with an optional unit suffix
//!   (k, M, G, Ki, Mi, …); when either side does not parse the term does not match, even
//!   inverted. `NOT_EXISTS` (deprecated) is `EXISTS` inverted.
//! - The ID regexp uses RE2 syntax (the `regex` crate is RE2-compatible) and is unanchored.

use std::collections::HashMap;

use rackboot_proto::cosi::resource::{label_term::Operation, IdQuery, LabelQuery, LabelTerm};
use regex::Regex;

/// A compiled set of label queries plus an optional ID regexp.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    label_queries: Vec<LabelQuery>,
    id_regexp: Option<Regex>,
}

/// A query the server cannot evaluate.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("invalid id regexp")]
    Regexp(#[source] regex::Error),
    #[error("unsupported label query operator {0}")]
    UnknownOp(i32),
}

impl Filter {
    /// Builds a filter, checking operators and compiling the regexp.
    pub fn new(labels: &[LabelQuery], id: Option<&IdQuery>) -> Result<Self, QueryError> {
        for q in labels {
            for t in &q.terms {
                if Operation::try_from(t.op).is_err() {
                    return Err(QueryError::UnknownOp(t.op));
                }
            }
        }
        let id_regexp = match id {
            Some(q) if !q.regexp.is_empty() => {
                Some(Regex::new(&q.regexp).map_err(QueryError::Regexp)?)
            }
            _ => None,
        };
        Ok(Filter {
            label_queries: labels.to_vec(),
            id_regexp,
        })
    }

    /// Whether a resource with this id and these labels passes.
    pub fn matches(&self, id: &str, labels: &HashMap<String, String>) -> bool {
        if let Some(re) = &self.id_regexp {
            if !re.is_match(id) {
                return false;
            }
        }
        self.label_queries.is_empty()
            || self
                .label_queries
                .iter()
                .any(|q| q.terms.iter().all(|t| term_matches(t, labels)))
    }
}

fn term_matches(term: &LabelTerm, labels: &HashMap<String, String>) -> bool {
    let mut op = Operation::try_from(term.op).unwrap_or(Operation::Exists);
    let mut invert = term.invert;
    if op == Operation::NotExists {
        op = Operation::Exists;
        invert = !invert;
    }
    let raw = match labels.get(&term.key) {
        None => Some(false),
        Some(_) if op != Operation::Exists && term.value.is_empty() => Some(false),
        Some(value) => {
            let first = term.value.first().map(String::as_str).unwrap_or("");
            match op {
                Operation::Exists | Operation::NotExists => Some(true),
                Operation::Equal => Some(value == first),
                Operation::In => Some(term.value.iter().any(|v| v == value)),
                Operation::Lt => Some(value.as_str() < first),
                Operation::Lte => Some(value.as_str() <= first),
                Operation::LtNumeric => numbers(value, first).map(|(l, r)| l < r),
                Operation::LteNumeric => numbers(value, first).map(|(l, r)| l <= r),
            }
        }
    };
    match raw {
        None => false,
        Some(m) => m != invert,
    }
}

fn numbers(left: &str, right: &str) -> Option<(i64, i64)> {
    Some((parse_number(left)?, parse_number(right)?))
}

fn parse_number(value: &str) -> Option<i64> {
    let value = value.trim();
    let split = value
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '-'))
        .map_or(value.len(), |(i, _)| i);
    let (digits, units) = value.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    Some(n.wrapping_mul(multiplier(units)?))
}

fn multiplier(units: &str) -> Option<i64> {
    let u = units.trim().to_ascii_lowercase();
    if u.is_empty() {
        return Some(1);
    }
    let binary = [
        ("pi", 1i64 << 50),
        ("ti", 1 << 40),
        ("gi", 1 << 30),
        ("mi", 1 << 20),
        ("ki", 1 << 10),
    ];
    for (p, m) in binary {
        if u.starts_with(p) {
            return Some(m);
        }
    }
    match u.as_bytes().first() {
        Some(b'p') => Some(1_000_000_000_000_000),
        Some(b't') => Some(1_000_000_000_000),
        Some(b'g') => Some(1_000_000_000),
        Some(b'm') => Some(1_000_000),
        Some(b'k') => Some(1_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn term(key: &str, op: Operation, value: &[&str], invert: bool) -> LabelTerm {
        LabelTerm {
            key: key.into(),
            op: op as i32,
            value: value.iter().map(|s| s.to_string()).collect(),
            invert,
        }
    }

    fn q(terms: Vec<LabelTerm>) -> LabelQuery {
        LabelQuery { terms }
    }

    #[test]
    fn operators() {
        let l = labels(&[("a", "x"), ("n", "10Ki")]);
        let cases = [
            (term("a", Operation::Exists, &[], false), true),
            (term("b", Operation::Exists, &[], false), false),
            (term("b", Operation::Exists, &[], true), true),
            (term("b", Operation::NotExists, &[], false), true),
            (term("a", Operation::Equal, &["x"], false), true),
            (term("a", Operation::Equal, &["y"], false), false),
            (term("a", Operation::Equal, &["y"], true), true),
            (term("a", Operation::Equal, &[], true), true),
            (term("a", Operation::In, &["y", "x"], false), true),
            (term("a", Operation::Lt, &["y"], false), true),
            (term("a", Operation::Lte, &["x"], false), true),
            (term("a", Operation::Lt, &["x"], false), false),
            (term("n", Operation::LtNumeric, &["10241"], false), true),
            (term("n", Operation::LteNumeric, &["10240"], false), true),
            (term("n", Operation::LtNumeric, &["10240"], false), false),
            (term("a", Operation::LtNumeric, &["1"], true), false),
        ];
        for (i, (t, want)) in cases.into_iter().enumerate() {
            let f = Filter::new(&[q(vec![t])], None).expect("filter");
            assert_eq!(f.matches("id", &l), want, "case {i}");
        }
    }

    #[test]
    fn and_within_or_across_and_id_regexp() {
        let l = labels(&[("a", "1"), ("b", "2")]);
        let both = q(vec![
            term("a", Operation::Equal, &["1"], false),
            term("b", Operation::Equal, &["3"], false),
        ]);
        let f = Filter::new(std::slice::from_ref(&both), None).expect("filter");
        assert!(!f.matches("x", &l));
        let alt = q(vec![term("b", Operation::Exists, &[], false)]);
        let f = Filter::new(&[both, alt], None).expect("filter");
        assert!(f.matches("x", &l));
        let f = Filter::new(
            &[],
            Some(&IdQuery {
                regexp: "^m-[0-9]+$".into(),
            }),
        )
        .expect("filter");
        assert!(f.matches("m-12", &l));
        assert!(!f.matches("m-x", &l));
        assert!(Filter::new(&[], Some(&IdQuery { regexp: "(".into() })).is_err());
    }
}
