//! The sensor's Ed25519 key: made once by an operator (`agent-sensor keygen`), used by the
//! daemon to sign checkpoints, and by auditors (with the public key only) to verify them.
//! Keys are stored as hex: the private key file is the 32-byte seed, 0600, never overwritten.
use std::{
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

/// Why a key could not be made or read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// `keygen` found a key in the way: keys are never overwritten (a lost one is lost for good).
    #[error("{0} already exists: refusing to overwrite a key (move it away first)")]
    Exists(PathBuf),
    /// The file does not hold 64 hex digits of a valid key.
    #[error("{0}: not a hex-encoded 32-byte Ed25519 key")]
    Malformed(PathBuf),
    /// The private key's mode (given) lets others read it: the daemon does not sign with a key
    /// anyone else may have copied.
    #[error("{0}: the private key is readable by others (mode {1:o}); chmod 600 it")]
    Exposed(PathBuf, u32),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_hex32(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let text = text.trim();
    if text.len() != 64 {
        return Err(KeyError::Malformed(path.to_owned()));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| KeyError::Malformed(path.to_owned()))?;
    }
    Ok(out)
}

/// Makes `sensor.key` (0600) and `sensor.pub` in `dir`; returns their paths.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
    let (private, public) = (dir.join("sensor.key"), dir.join("sensor.pub"));
    for p in [&private, &public] {
        if p.exists() {
            return Err(KeyError::Exists(p.clone()));
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .map_err(io(Path::new("/dev/urandom")))?;
    let key = SigningKey::from_bytes(&seed);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .map_err(io(&private))?;
    writeln!(file, "{}", crate::record::hex(&seed)).map_err(io(&private))?;
    file.sync_all().map_err(io(&private))?;
    std::fs::write(
        &public,
        format!("{}\n", crate::record::hex(key.verifying_key().as_bytes())),
    )
    .map_err(io(&public))?;
    Ok((private, public))
}

/// Reads the daemon's private key, refusing one that others can read.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let mode = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed(path.to_owned(), mode));
    }
    Ok(SigningKey::from_bytes(&read_hex32(path)?))
}

/// Reads a public key, for verifying checkpoints.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_bytes(&read_hex32(path)?).map_err(|_| KeyError::Malformed(path.to_owned()))
}

/// What a checkpoint signs: the run, and the record (sequence and hash) it vouches for, which
/// by the chain vouches for every record before it.
pub fn checkpoint_message(instance_id: &str, sequence: u64, hash: &str) -> Vec<u8> {
    format!("agent-sensor checkpoint v1\n{instance_id}\n{sequence}\n{hash}\n").into_bytes()
}

/// The Ed25519 signature of `message`, as the 128 hex digits a checkpoint record carries.
pub fn sign(key: &SigningKey, message: &[u8]) -> String {
    crate::record::hex(&key.sign(message).to_bytes())
}

/// Whether `signature_hex` (as [`sign`] writes it) is `key`'s signature of `message`; a
/// malformed signature is simply not valid.
pub fn verify(key: &VerifyingKey, message: &[u8], signature_hex: &str) -> bool {
    if signature_hex.len() != 128 {
        return false;
    }
    let mut bytes = [0u8; 64];
    for (i, b) in bytes.iter_mut().enumerate() {
        match u8::from_str_radix(&signature_hex[2 * i..2 * i + 2], 16) {
            Ok(v) => *b = v,
            Err(_) => return false,
        }
    }
    key.verify(message, &Signature::from_bytes(&bytes)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_verify_and_are_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("keygen-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (private, public) = keygen(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(keygen(&dir), Err(KeyError::Exists(_))));
        let key = load_signing_key(&private).unwrap();
        let pubkey = load_verifying_key(&public).unwrap();
        let msg = checkpoint_message("run", 7, "ab");
        let sig = sign(&key, &msg);
        assert!(verify(&pubkey, &msg, &sig));
        assert!(!verify(&pubkey, &checkpoint_message("run", 8, "ab"), &sig));
        assert!(!verify(&pubkey, &msg, "00"));
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_signing_key(&private),
            Err(KeyError::Exposed(..))
        ));
        std::fs::write(&public, "xyz").unwrap();
        assert!(matches!(
            load_verifying_key(&public),
            Err(KeyError::Malformed(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
