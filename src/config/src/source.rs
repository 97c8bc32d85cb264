//! TOML text handling: multi-pass parsing that reports every problem, and key → line lookup.

use crate::raw::RawConfig;
use crate::Problem;

/// Upper bound on parse passes (each pass removes one problem).
const MAX_PASSES: usize = 64;

/// Parse `text`, returning every parse problem and the configuration that remains once the
/// offending lines are blanked (so that validation can still report its own problems).
pub(crate) fn parse_all(text: &str) -> (Option<RawConfig>, Vec<Problem>) {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut problems = Vec::new();
    for _ in 0..MAX_PASSES {
        let current = lines.join("\n");
        match toml::from_str::<RawConfig>(&current) {
            Ok(raw) => return (Some(raw), problems),
            Err(e) => {
                let Some(span) = e.span() else {
                    problems.push(Problem {
                        key: "(file)".into(),
                        line: None,
                        message: first_line(e.message()),
                    });
                    return (None, problems);
                };
                let first = line_of(&current, span.start);
                let last = line_of(&current, span.end.saturating_sub(1).max(span.start));
                problems.push(Problem {
                    key: key_at(&lines, first).unwrap_or_else(|| "(file)".into()),
                    line: Some(first),
                    message: first_line(e.message()),
                });
                blank(&mut lines, first, last);
            }
        }
    }
    (None, problems)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Blank 1-based lines `first..=last`; a table header takes its whole table with it.
fn blank(lines: &mut [String], first: usize, last: usize) {
    let start = first.saturating_sub(1);
    let mut end = last.max(first).min(lines.len());
    if lines.get(start).is_some_and(|l| is_header(l)) {
        end = lines
            .iter()
            .skip(start + 1)
            .position(|l| is_header(l))
            .map_or(lines.len(), |i| start + 1 + i);
    }
    for l in lines.iter_mut().take(end).skip(start) {
        l.clear();
    }
}

fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

fn header_name(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t.strip_prefix("[[").or_else(|| t.strip_prefix('['))?;
    let inner = inner.split(']').next()?;
    Some(inner.trim().replace([' ', '"'], "")).filter(|n| !n.is_empty())
}

fn key_of_line(line: &str) -> Option<String> {
    let t = line.trim_start();
    if t.starts_with('#') || t.is_empty() {
        return None;
    }
    let (k, _) = t.split_once('=')?;
    Some(k.trim().replace([' ', '"'], "")).filter(|k| !k.is_empty())
}

/// Dotted key defined at (1-based) `line`, with the enclosing table's name.
fn key_at(lines: &[String], line: usize) -> Option<String> {
    let idx = line.checked_sub(1)?;
    let here = lines.get(idx)?;
    if is_header(here) {
        return header_name(here);
    }
    let key = key_of_line(here)?;
    let table = lines[..idx]
        .iter()
        .rev()
        .find(|l| is_header(l))
        .and_then(|l| header_name(l));
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key,
    })
}

/// The 1-based line where dotted `key` is set (or its table is opened), if the text has it.
pub(crate) fn locate(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    (1..=lines.len())
        .find(|&n| key_at(&lines, n).as_deref() == Some(key))
        .or_else(|| {
            let (table, _) = key.rsplit_once('.')?;
            (1..=lines.len()).find(|&n| {
                is_header(&lines[n - 1]) && header_name(&lines[n - 1]).as_deref() == Some(table)
            })
        })
}
