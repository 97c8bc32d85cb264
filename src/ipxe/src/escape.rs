//! Guards for every value that ends up inside an iPXE script line.
//!
//! iPXE reads a script line by line (`\n`, with an optional trailing `\r`); a line that ends in
//! `\` is joined with the next one. Within a line it splits on whitespace *before* expanding
//! `${...}` settings, and treats the tokens `||`, `&&` and `;` as command separators and any token
//! starting with `#` as the start of a comment. There is no quoting. So a value is safe to put on
//! a line when it holds no control character (no line break) and, where it becomes arguments,
//! no separator or comment token and no trailing backslash. We refuse such values with a typed
//! error instead of stripping them: a silently altered kernel command line is worse than a 500.

use std::fmt;

/// Why a value could not be put into a script. `field` names the input (`"cmdline"`,
/// `"kernel"`, `"machine_id"`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A control character (line break, carriage return, tab, NUL, ...) in the value: it could
    /// end the script line and inject commands.
    ControlCharacter { field: &'static str },
    /// An argument list would contain an iPXE command separator (`;`, `||`, `&&`), a comment
    /// (`#...`) or end in a line-continuation backslash.
    ScriptSyntax { field: &'static str, token: String },
    /// Not an acceptable URL or asset path (scheme other than http/https, whitespace, `..`,
    /// characters outside the allowed set, empty).
    InvalidUrl {
        field: &'static str,
        reason: &'static str,
    },
    /// A value with a fixed shape (machine id, appliance address, uuid, mac, image name) does
    /// not have it.
    InvalidValue {
        field: &'static str,
        reason: &'static str,
    },
    /// Two images (kernel or initrds) would get the same name in iPXE.
    DuplicateImageName { name: String },
}

impl RenderError {
    /// The input the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            RenderError::ControlCharacter { field }
            | RenderError::ScriptSyntax { field, .. }
            | RenderError::InvalidUrl { field, .. }
            | RenderError::InvalidValue { field, .. } => field,
            RenderError::DuplicateImageName { .. } => "initrd",
        }
    }

    /// HTTP status the boot server should answer with: 400 when the bad value came from the
    /// machine's query (`uuid`, `mac`), 500 when it came from the appliance's own
    /// configuration or the operator's boot settings.
    pub fn http_status(&self) -> u16 {
        match self.field() {
            "uuid" | "mac" => 400,
            _ => 500,
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::ControlCharacter { field } => {
                write!(f, "{field}: contains a control character or line break")
            }
            RenderError::ScriptSyntax { field, token } => write!(
                f,
                "{field}: token {token:?} would be read by iPXE as script syntax"
            ),
            RenderError::InvalidUrl { field, reason } => {
                write!(f, "{field}: invalid URL: {reason}")
            }
            RenderError::InvalidValue { field, reason } => write!(f, "{field}: {reason}"),
            RenderError::DuplicateImageName { name } => {
                write!(f, "two boot images would both be named {name:?} in iPXE")
            }
        }
    }
}

impl std::error::Error for RenderError {}

/// True for characters that could end or corrupt a script line.
pub(crate) fn is_line_breaking(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Refuse any control character (this includes `\n`, `\r`, `\t`, NUL and DEL).
pub(crate) fn check_single_line(field: &'static str, value: &str) -> Result<(), RenderError> {
    // ASCII (nearly every value): a byte test; otherwise by character (C1 controls, U+2028/9).
    let breaks = if value.is_ascii() {
        value.bytes().any(|b| b < 0x20 || b == 0x7f)
    } else {
        value.chars().any(is_line_breaking)
    };
    if breaks {
        return Err(RenderError::ControlCharacter { field });
    }
    Ok(())
}

/// Validate a whitespace-separated argument list that is appended to a command line and return
/// it normalised to single spaces (iPXE collapses whitespace anyway).
pub(crate) fn check_args(field: &'static str, value: &str) -> Result<String, RenderError> {
    check_single_line(field, value)?;
    let mut out = Vec::new();
    for token in value.split_whitespace() {
        if token == ";" || token == "||" || token == "&&" || token.starts_with('#') {
            return Err(RenderError::ScriptSyntax {
                field,
                token: token.to_string(),
            });
        }
        out.push(token);
    }
    if let Some(last) = out.last() {
        if last.ends_with('\\') {
            return Err(RenderError::ScriptSyntax {
                field,
                token: (*last).to_string(),
            });
        }
    }
    Ok(out.join(" "))
}

/// An absolute `http://` or `https://` URL usable as a single iPXE argument. iPXE settings
/// (`${...}`) are allowed: operators may use them deliberately.
pub(crate) fn check_url(field: &'static str, url: &str) -> Result<(), RenderError> {
    check_single_line(field, url)?;
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else {
        return Err(RenderError::InvalidUrl {
            field,
            reason: "only http:// and https:// URLs are allowed",
        });
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(RenderError::InvalidUrl {
            field,
            reason: "no host",
        });
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '\\' | '"' | '\'' | '`' | '<' | '>' | '^' | '|'))
    {
        return Err(RenderError::InvalidUrl {
            field,
            reason: if c.is_whitespace() {
                "contains whitespace"
            } else {
                "contains a character not allowed in URLs"
            },
        });
    }
    Ok(())
}

/// A path below `/assets/` on the appliance (leading `/` ignored). Conservative character set,
/// no empty, `.` or `..` segments.
pub(crate) fn check_asset_path<'a>(
    field: &'static str,
    path: &'a str,
) -> Result<&'a str, RenderError> {
    check_single_line(field, path)?;
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return Err(RenderError::InvalidUrl {
            field,
            reason: "empty asset path",
        });
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~' | '/' | '+' | ','))
    {
        return Err(RenderError::InvalidUrl {
            field,
            reason: "asset paths may only use [A-Za-z0-9._~/+,-]",
        });
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(RenderError::InvalidUrl {
            field,
            reason: "asset path has an empty, '.' or '..' segment",
        });
    }
    Ok(path)
}

/// A plain identifier: `[A-Za-z0-9._:@-]`, 1..=128 characters. Used for the machine id.
pub(crate) fn check_token(field: &'static str, value: &str) -> Result<(), RenderError> {
    // The allowed set is printable ASCII: a value made of it alone needs no other test.
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-');
    if (1..=128).contains(&value.len()) && value.bytes().all(plain) {
        return Ok(());
    }
    check_single_line(field, value)?;
    if value.is_empty() || value.len() > 128 {
        return Err(RenderError::InvalidValue {
            field,
            reason: "must be 1 to 128 characters",
        });
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-'))
    {
        return Err(RenderError::InvalidValue {
            field,
            reason: "may only use [A-Za-z0-9._:@-]",
        });
    }
    Ok(())
}

/// The appliance address: `host`, `host:port` or `[v6addr]:port`.
pub(crate) fn check_host_port(field: &'static str, value: &str) -> Result<(), RenderError> {
    check_single_line(field, value)?;
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-'));
    if value.is_empty() || value.len() > 255 || !ok_chars || value.starts_with(':') {
        return Err(RenderError::InvalidValue {
            field,
            reason: "must be host:port (letters, digits, '.', '-', ':', '[', ']')",
        });
    }
    Ok(())
}

/// Replace every control character by a space: for texts that go into an HTTP body or a log,
/// never into a script.
pub(crate) fn strip_controls(value: &str) -> String {
    value
        .chars()
        .map(|c| if is_line_breaking(c) { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_refuse_separators_and_continuation() {
        assert!(check_args("cmdline", "a ; b").is_err());
        assert!(check_args("cmdline", "a || b").is_err());
        assert!(check_args("cmdline", "a && b").is_err());
        assert!(check_args("cmdline", "a #b").is_err());
        assert!(check_args("cmdline", "a b\\").is_err());
        assert!(check_args("cmdline", "a\nb").is_err());
        assert!(check_args("cmdline", "a\tb").is_err());
        assert_eq!(
            check_args("cmdline", "  console=ttyS0   a;b a#b  ").as_deref(),
            Ok("console=ttyS0 a;b a#b")
        );
    }

    #[test]
    fn line_breaks_in_ascii_and_beyond() {
        for bad in [
            "a\nb",
            "a\rb",
            "\t",
            "a\u{7f}",
            "\u{0}",
            "é\n",
            "a\u{85}b",
            "x\u{2028}",
            "\u{2029}",
        ] {
            assert!(check_single_line("f", bad).is_err(), "{bad:?}");
        }
        for good in ["", "a b", "console=ttyS0,115200", "é ü", "~!@#$%^&*()"] {
            assert!(check_single_line("f", good).is_ok(), "{good:?}");
        }
        assert!(check_token("id", "r1-u07.a_b:c@d").is_ok());
        assert!(check_token("id", &"a".repeat(128)).is_ok());
        assert!(check_token("id", &"a".repeat(129)).is_err());
        assert!(check_token("id", "").is_err());
        assert!(check_token("id", "é").is_err());
        assert_eq!(
            check_token("id", "a\nb"),
            Err(RenderError::ControlCharacter { field: "id" })
        );
    }

    #[test]
    fn urls() {
        assert!(check_url("url", "http://10.0.0.1/x").is_ok());
        assert!(check_url("url", "HTTPS://h/x?a=b&c=${uuid}").is_ok());
        assert!(check_url("url", "tftp://h/x").is_err());
        assert!(check_url("url", "http:///x").is_err());
        assert!(check_url("url", "http://h/x y").is_err());
        assert!(check_url("url", "http://h/x\nchain http://evil").is_err());
        assert!(check_url("url", "http://h/x\\").is_err());
        assert!(check_url("url", "").is_err());
    }

    #[test]
    fn asset_paths() {
        assert_eq!(
            check_asset_path("kernel", "/agent/vmlinuz"),
            Ok("agent/vmlinuz")
        );
        assert!(check_asset_path("kernel", "../etc/passwd").is_err());
        assert!(check_asset_path("kernel", "a//b").is_err());
        assert!(check_asset_path("kernel", "a/b c").is_err());
        assert!(check_asset_path("kernel", "a/${x}").is_err());
        assert!(check_asset_path("kernel", "/").is_err());
    }

    #[test]
    fn tokens_and_hosts() {
        assert!(check_token("machine_id", "r1-u07").is_ok());
        assert!(check_token("machine_id", "r1 u07").is_err());
        assert!(check_token("machine_id", "${x}").is_err());
        assert!(check_host_port("appliance", "10.99.0.1:50042").is_ok());
        assert!(check_host_port("appliance", "[fd00::1]:50042").is_ok());
        assert!(check_host_port("appliance", "10.99.0.1:50042/x").is_err());
        assert_eq!(strip_controls("a\nb\rc"), "a b c");
    }
}
