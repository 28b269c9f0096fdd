//! The admin bearer token: read from `[admin] token_file` (one line; a trailing newline is
//! ignored), or generated into `data_dir/admin.token` (mode 0600) when none is configured.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why no token could be had.
#[derive(Debug)]
pub enum TokenError {
    Read { path: PathBuf, error: std::io::Error },
    Empty { path: PathBuf },
    Write { path: PathBuf, error: std::io::Error },
    Random,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Read { path, error } => {
                write!(f, "{}: cannot read: {error}", path.display())
            }
            TokenError::Empty { path } => write!(f, "{}: the token file is empty", path.display()),
            TokenError::Write { path, error } => {
                write!(f, "{}: cannot write: {error}", path.display())
            }
            TokenError::Random => f.write_str("no randomness for a token"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Reads the configured token file.
pub fn read(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| TokenError::Read { path: path.to_owned(), error })?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(TokenError::Empty { path: path.to_owned() });
    }
    Ok(token)
}

/// The token in `data_dir/admin.token`, made (random, 256 bits) when the file is missing.
pub fn generated(data_dir: &Path) -> Result<(String, PathBuf), TokenError> {
    let path = data_dir.join("admin.token");
    if path.exists() {
        return read(&path).map(|t| (t, path));
    }
    let mut bytes = [0u8; 32];
    crate::transport::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| TokenError::Random)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir)
        .map_err(|error| TokenError::Write { path: path.clone(), error })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(&path).map_err(|error| TokenError::Write { path: path.clone(), error })?;
    writeln!(file, "{token}").map_err(|error| TokenError::Write { path: path.clone(), error })?;
    Ok((token, path))
}

/// Compares a presented token with the expected one in time independent of where they differ.
pub fn equal(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_reuse_then_read() {
        let dir = std::env::temp_dir().join(format!("lifeline-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (t1, path) = generated(&dir).unwrap();
        assert_eq!(t1.len(), 64);
        let (t2, _) = generated(&dir).unwrap();
        assert_eq!(t1, t2, "an existing token is kept");
        assert_eq!(read(&path).unwrap(), t1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(read(&path), Err(TokenError::Empty { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn comparison() {
        assert!(equal("abc", "abc"));
        assert!(!equal("abd", "abc"));
        assert!(!equal("ab", "abc"));
    }
}
