//! Validation of the boot script query: `GET /ipxe/boot.ipxe?uuid=&mac=&arch=`.
//!
//! The values come from an unauthenticated machine on the segment (iPXE fills them from
//! `${uuid}`, `${netX/mac:hexhyp}` and `${buildarch}`), and end up in scripts, logs and store
//! lookups, so they are parsed into closed shapes: a lower-case 8-4-4-4-12 UUID, a lower-case
//! colon MAC and one of five architecture names. Nothing else survives parsing.

use std::borrow::Cow;
use std::fmt;

/// iPXE build architecture, as `${buildarch}` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    I386,
    X86_64,
    Arm32,
    Arm64,
    Riscv64,
}

impl Arch {
    /// Every accepted architecture.
    pub const ALL: [Arch; 5] = [
        Arch::I386,
        Arch::X86_64,
        Arch::Arm32,
        Arch::Arm64,
        Arch::Riscv64,
    ];

    /// The `${buildarch}` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::I386 => "i386",
            Arch::X86_64 => "x86_64",
            Arch::Arm32 => "arm32",
            Arch::Arm64 => "arm64",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// Parse the exact `${buildarch}` spelling (lower case).
    pub fn from_buildarch(s: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated boot query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootQuery {
    /// SMBIOS UUID, lower case, `8-4-4-4-12`.
    pub uuid: String,
    /// The UUID identifies nothing: absent (with a `mac`), or a placeholder that many boards
    /// and VMs ship — all zero, all `f`, or `03000200-0400-0500-0006-000700080009` (in either
    /// byte order). Accepted, but the machine is matched by MAC instead.
    pub uuid_is_placeholder: bool,
    /// MAC of the NIC iPXE booted through, lower case, colon form (`52:54:00:99:00:10`).
    pub mac: Option<String>,
    /// iPXE build architecture.
    pub arch: Option<Arch>,
}

/// Why a boot query was refused. Every variant maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// Neither a `uuid` nor a `mac` (iPXE sends `uuid=` when `${uuid}` is unset, as on boards
    /// without SMBIOS; the MAC then identifies the machine).
    MissingUuid,
    /// `uuid` is not 8-4-4-4-12 or 32 hex digits.
    InvalidUuid,
    /// `mac` is not six hex pairs separated by `-` or `:`.
    InvalidMac,
    /// The parameter's decoded value contains a line break, space, `;`, `$`, `{`, `}`, a quote,
    /// a backslash or another control character.
    UnsafeValue { param: &'static str },
    /// Malformed percent-encoding, or the decoded bytes are not UTF-8.
    BadEncoding { param: &'static str },
    /// The parameter appears more than once.
    Duplicate { param: &'static str },
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::MissingUuid => f.write_str("missing uuid (and no mac)"),
            QueryError::InvalidUuid => f.write_str("invalid uuid: expected 8-4-4-4-12 hex digits"),
            QueryError::InvalidMac => {
                f.write_str("invalid mac: expected six hex pairs separated by '-' or ':'")
            }
            QueryError::UnsafeValue { param } => {
                write!(f, "parameter {param}: value contains forbidden characters")
            }
            QueryError::BadEncoding { param } => {
                write!(f, "parameter {param}: bad percent-encoding")
            }
            QueryError::Duplicate { param } => write!(f, "parameter {param} given more than once"),
        }
    }
}

impl std::error::Error for QueryError {}

const PARAMS: [&str; 3] = ["uuid", "mac", "arch"];

const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// See [`BootQuery::uuid_is_placeholder`].
const PLACEHOLDER_UUIDS: [&str; 4] = [
    NIL_UUID,
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",
    "00020003-0004-0005-0006-000700080009",
];

impl BootQuery {
    /// Parse the raw query string (what follows `?`; a leading `?` is tolerated).
    ///
    /// Unknown parameters are ignored entirely (they never reach a script). For `uuid`, `mac`
    /// and `arch`: percent-decoding (`+` is a space), then refusal of unsafe characters
    /// ([`QueryError::UnsafeValue`]), then shape validation. Empty `mac=` and `arch=` count as
    /// absent (iPXE expands an unset setting to nothing); so is an `arch` this build does not
    /// know. An empty `uuid=` is accepted with a `mac` ([`BootQuery::uuid_is_placeholder`]),
    /// [`QueryError::MissingUuid`] without one.
    pub fn parse(query_string: &str) -> Result<BootQuery, QueryError> {
        let query_string = query_string.strip_prefix('?').unwrap_or(query_string);
        let mut values: [Option<Cow<'_, str>>; 3] = [None, None, None];
        for pair in query_string.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(key) = percent_decode(raw_key) else {
                continue; // not one of ours
            };
            let Some(idx) = PARAMS.iter().position(|p| *p == key.as_ref()) else {
                continue;
            };
            let param = PARAMS[idx];
            let value =
                percent_decode(raw_value).map_err(|()| QueryError::BadEncoding { param })?;
            if has_unsafe(&value) {
                return Err(QueryError::UnsafeValue { param });
            }
            if values[idx].is_some() {
                return Err(QueryError::Duplicate { param });
            }
            values[idx] = Some(value);
        }
        let [uuid, mac, arch] = values;

        let mac = match mac {
            Some(m) if !m.is_empty() => Some(normalize_mac(&m).ok_or(QueryError::InvalidMac)?),
            _ => None,
        };
        let uuid = match uuid {
            Some(u) if !u.is_empty() => normalize_uuid(&u).ok_or(QueryError::InvalidUuid)?,
            _ if mac.is_some() => NIL_UUID.to_string(),
            _ => return Err(QueryError::MissingUuid),
        };
        let uuid_is_placeholder = PLACEHOLDER_UUIDS.contains(&uuid.as_str());
        // An architecture this build does not know (`riscv32`, `loong64`, ...) counts as absent:
        // the script's defaults apply rather than refusing the boot.
        let arch = arch.and_then(|a| Arch::from_buildarch(&a));
        Ok(BootQuery {
            uuid,
            uuid_is_placeholder,
            mac,
            arch,
        })
    }
}

/// Whether `value` holds a character [`is_unsafe`] refuses (a byte test for ASCII values).
fn has_unsafe(value: &str) -> bool {
    if value.is_ascii() {
        value.bytes().any(|b| is_unsafe(char::from(b)))
    } else {
        value.chars().any(is_unsafe)
    }
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(c, ';' | '$' | '{' | '}' | '"' | '\'' | '`' | '\\')
}

/// `%XX` and `+` decoding; `Err` on a malformed escape or non-UTF-8 result. Text without
/// either (what iPXE sends) is returned as it is, without a copy.
fn percent_decode(s: &str) -> Result<Cow<'_, str>, ()> {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex_val(*b)).ok_or(())?;
                let lo = bytes.get(i + 2).and_then(|b| hex_val(*b)).ok_or(())?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| ())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `8-4-4-4-12` or 32 hex digits, any case → lower-case `8-4-4-4-12`. One pass, one
/// allocation: every boot script request normalises its UUID twice.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let dashed = match b.len() {
        36 => true,
        32 => false,
        _ => return None,
    };
    let mut out = String::with_capacity(36);
    let mut digits = 0;
    for (i, &c) in b.iter().enumerate() {
        if dashed && matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        if !c.is_ascii_hexdigit() {
            return None;
        }
        if matches!(digits, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(c.to_ascii_lowercase()));
        digits += 1;
    }
    Some(out)
}

/// Already in the form [`normalize_uuid`] gives (without building it).
pub fn is_normalized_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                matches!(c, b'0'..=b'9' | b'a'..=b'f')
            }
        })
}

/// Already in the form [`normalize_mac`] gives (without building it).
pub fn is_normalized_mac(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, &c)| {
            if i % 3 == 2 {
                c == b':'
            } else {
                matches!(c, b'0'..=b'9' | b'a'..=b'f')
            }
        })
}

/// `52-54-00-99-00-10` or `52:54:00:99:00:10`, any case → lower-case colon form. The two
/// separators may not be mixed.
pub fn normalize_mac(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 17 || !matches!(b[2], b'-' | b':') {
        return None;
    }
    let sep = b[2];
    let mut out = String::with_capacity(17);
    for (i, &c) in b.iter().enumerate() {
        if i % 3 == 2 {
            if c != sep {
                return None;
            }
            out.push(':');
        } else if c.is_ascii_hexdigit() {
            out.push(char::from(c.to_ascii_lowercase()));
        } else {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        let want = Some("4c4c4544-0035-3010-8052-b4c04f4d4d32".to_string());
        assert_eq!(normalize_uuid("4C4C4544-0035-3010-8052-B4C04F4D4D32"), want);
        assert_eq!(normalize_uuid("4c4c454400353010 8052b4c04f4d4d32"), None);
        assert_eq!(normalize_uuid("4c4c45440035301080 52b4c04f4d4d32"), None);
        assert_eq!(normalize_uuid("4c4c4544003530108052b4c04f4d4d32"), want);
        assert_eq!(normalize_uuid("4c4c4544-0035-3010-8052-b4c04f4d4d3"), None);
        assert_eq!(normalize_uuid("4c4c4544+0035-3010-8052-b4c04f4d4d32"), None);
        assert_eq!(normalize_uuid("4c4c4544-0035-3010-8052-b4c04f4d4dzz"), None);
        // multi-byte characters must not panic
        assert_eq!(normalize_uuid("ééééééééééééééééé-é"), None);
    }

    #[test]
    fn mac_forms() {
        let want = Some("52:54:00:99:00:1a".to_string());
        assert_eq!(normalize_mac("52-54-00-99-00-1A"), want);
        assert_eq!(normalize_mac("52:54:00:99:00:1a"), want);
        assert_eq!(normalize_mac("52-54:00-99-00-1a"), None);
        assert_eq!(normalize_mac("525400990010"), None);
        assert_eq!(normalize_mac("52-54-00-99-00-1g"), None);
        assert_eq!(normalize_mac("é-54-00-99-00-1a"), None);
    }

    /// The earlier, obviously right (and allocating) forms, as the reference.
    fn uuid_reference(s: &str) -> Option<String> {
        let hex: String = match s.len() {
            36 => {
                let b = s.as_bytes();
                if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                    return None;
                }
                s.chars().filter(|c| *c != '-').collect()
            }
            32 => s.to_string(),
            _ => return None,
        };
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let h = hex.to_ascii_lowercase();
        Some(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }

    fn mac_reference(s: &str) -> Option<String> {
        if s.len() != 17 {
            return None;
        }
        let sep = *s.as_bytes().get(2)?;
        if sep != b'-' && sep != b':' {
            return None;
        }
        let parts: Vec<&str> = s.split(sep as char).collect();
        if parts.len() != 6
            || !parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return None;
        }
        Some(parts.join(":").to_ascii_lowercase())
    }

    #[test]
    fn one_pass_forms_equal_the_reference_on_mutated_inputs() {
        let seeds = [
            "4C4C4544-0035-3010-8052-B4C04F4D4D32",
            "4c4c4544003530108052b4c04f4d4d32",
            "52-54-00-99-00-1A",
            "52:54:00:99:00:1a",
        ];
        let alphabet = b"0123456789abcdefABCDEFgG-:+ \xc3";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for seed in seeds {
            for _ in 0..5000 {
                let mut b = seed.as_bytes().to_vec();
                for _ in 0..(x % 3 + 1) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x % b.len() as u64) as usize;
                    b[i] = alphabet[((x >> 32) % alphabet.len() as u64) as usize];
                }
                let s = String::from_utf8_lossy(&b);
                assert_eq!(normalize_uuid(&s), uuid_reference(&s), "{s:?}");
                assert_eq!(normalize_mac(&s), mac_reference(&s), "{s:?}");
                // The render-time checks accept exactly the normalised forms.
                for t in [s.to_string(), s.to_ascii_lowercase()] {
                    let uuid_ok = normalize_uuid(&t).as_deref() == Some(t.as_str());
                    let mac_ok = normalize_mac(&t).as_deref() == Some(t.as_str());
                    assert_eq!(is_normalized_uuid(&t), uuid_ok, "{t:?}");
                    assert_eq!(is_normalized_mac(&t), mac_ok, "{t:?}");
                }
            }
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Ok("a b c"));
        assert_eq!(percent_decode("%0A").as_deref(), Ok("\n"));
        assert!(matches!(
            percent_decode("plain-52:54"),
            Ok(Cow::Borrowed("plain-52:54"))
        ));
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err()); // not UTF-8
    }
}
