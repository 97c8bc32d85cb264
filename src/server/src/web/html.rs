//! A tiny HTML builder: every value goes through [`esc`]; markup is only ever written from
//! string literals in this module's callers. Attribute values are always double-quoted.

use std::fmt::Write;

/// Escape text for an HTML element body or a double-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a value for a URL path segment or query value.
pub fn url_enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decode `application/x-www-form-urlencoded` into pairs.
pub fn form_decode(body: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

/// A page under construction.
pub struct Page {
    pub out: String,
}

impl Page {
    /// Document head and the top bar. `csrf` (when logged in) goes into a `<meta>` for app.js.
    pub fn new(title: &str, nav: &str, csrf: Option<&str>, logged_in_note: bool) -> Self {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        let _ = write!(out, "<title>{} · rackboot</title>", esc(title));
        if let Some(c) = csrf {
            let _ = write!(out, "<meta name=\"csrf-token\" content=\"{}\">", esc(c));
        }
        out.push_str("<link rel=\"stylesheet\" href=\"/static/app.css\">");
        out.push_str("<script src=\"/static/app.js\" defer></script></head>\n<body>");
        out.push_str("<header class=\"top\"><a class=\"brand\" href=\"/\">rackboot</a><nav>");
        for (href, label, key) in [
            ("/", "Machines", "machines"),
            ("/events", "Events", "events"),
        ] {
            let cls = if key == nav { " class=\"here\"" } else { "" };
            let _ = write!(out, "<a href=\"{href}\"{cls}>{label}</a>");
        }
        out.push_str(
            "</nav><span id=\"live\" class=\"live off\" title=\"live updates\">offline</span>",
        );
        if csrf.is_some() {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"link\">Log out</button></form>",
                esc(csrf.unwrap_or_default())
            );
        } else if logged_in_note {
            out.push_str("<a class=\"login\" href=\"/login\">Log in for actions</a>");
        }
        out.push_str("</header>\n<div id=\"flash\" class=\"flash\" role=\"status\" aria-live=\"polite\"></div>\n<main>");
        Self { out }
    }

    pub fn raw(&mut self, s: &str) -> &mut Self {
        self.out.push_str(s);
        self
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.out.push_str(&esc(s));
        self
    }

    /// `<tag class="cls">text</tag>` with `text` escaped.
    pub fn el(&mut self, tag: &str, cls: &str, text: &str) -> &mut Self {
        if cls.is_empty() {
            let _ = write!(self.out, "<{tag}>{}</{tag}>", esc(text));
        } else {
            let _ = write!(
                self.out,
                "<{tag} class=\"{}\">{}</{tag}>",
                esc(cls),
                esc(text)
            );
        }
        self
    }

    pub fn finish(mut self) -> String {
        self.out.push_str("</main></body></html>\n");
        self.out
    }
}

/// Relative time like `12 s ago`; `never` for `None`.
pub fn ago(now_ms: u64, at_ms: Option<u64>) -> String {
    let Some(at) = at_ms else {
        return "never".into();
    };
    let s = now_ms.saturating_sub(at) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `<time>` that app.js keeps relative; the absolute UTC time is its title.
pub fn time_el(now_ms: u64, at_ms: Option<u64>) -> String {
    match at_ms {
        None => "<time>never</time>".into(),
        Some(at) => format!(
            "<time data-ms=\"{at}\" title=\"{}\">{}</time>",
            esc(&utc(at)),
            esc(&ago(now_ms, Some(at)))
        ),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix milliseconds (civil-from-days, no time crate).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<b>x</b> & "q" 'a'"#),
            "&lt;b&gt;x&lt;/b&gt; &amp; &quot;q&quot; &#39;a&#39;"
        );
    }

    #[test]
    fn decodes_forms() {
        assert_eq!(
            form_decode("token=ab%2Bc+d&next=%2F&x"),
            vec![
                ("token".to_string(), "ab+c d".to_string()),
                ("next".to_string(), "/".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(form_decode("a=%zz%4"), vec![("a".into(), "%zz%4".into())]);
    }

    #[test]
    fn formats_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199_000), "2024-02-29 23:59:59 UTC");
        assert_eq!(ago(10_000, Some(5_000)), "5 s ago");
        assert_eq!(ago(10_000_000, Some(0)), "2 h ago");
        assert_eq!(ago(1, None), "never");
    }
}
