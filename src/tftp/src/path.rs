//! Request filename sanitising.
//!
//! Pure string work; the shell still has to refuse symlinks that leave the
//! root when it opens the file.

use std::fmt;

/// Longest accepted name after normalisation, in bytes.
pub const MAX_PATH_LEN: usize = 255;

/// Why a requested filename was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// Nothing left after normalisation (e.g. `""`, `"/"`, `"./"`).
    Empty,
    /// Longer than [`MAX_PATH_LEN`] bytes after normalisation.
    TooLong,
    /// Contains a `..` component.
    ParentComponent,
    /// Contains NUL, another control character (< 0x20) or DEL (0x7f).
    ControlCharacter,
    /// Not valid UTF-8.
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Empty => "empty file name",
            PathError::TooLong => "file name too long",
            PathError::ParentComponent => "file name contains '..'",
            PathError::ControlCharacter => "file name contains a control character",
            PathError::NotUtf8 => "file name is not valid UTF-8",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalise a requested filename into a relative path under the TFTP root.
///
/// `\` becomes `/`; leading `/` are stripped (absolute names are relative to
/// the root, like `tftpd-hpa -s`); empty and `.` components are dropped;
/// `..` components, control characters, non-UTF-8, empty results and results
/// longer than 255 bytes are refused.
///
/// ```
/// use rackboot_tftp::sanitize;
/// assert_eq!(sanitize("\\pxelinux.cfg\\default").as_deref(), Ok("pxelinux.cfg/default"));
/// assert!(sanitize("../etc/passwd").is_err());
/// ```
pub fn sanitize(name: impl AsRef<[u8]>) -> Result<String, PathError> {
    let raw = name.as_ref();
    if raw.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathError::ControlCharacter);
    }
    let text = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?;
    let mut out = String::with_capacity(text.len());
    for component in text.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => return Err(PathError::ParentComponent),
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        Err(PathError::Empty)
    } else if out.len() > MAX_PATH_LEN {
        Err(PathError::TooLong)
    } else {
        Ok(out)
    }
}
