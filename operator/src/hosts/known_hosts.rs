//! OpenSSH `known_hosts`: parse the file and decide whether a server's host key is the one on record.
//!
//! Supported: comma-separated host patterns with `*`/`?` wildcards and `!` negation, the `[host]:port` form
//! for ports other than 22, hashed entries (`|1|salt|hash`, HMAC-SHA1), comments, `@revoked` lines, and
//! every key type ssh-key parses (ed25519, ecdsa, rsa, ...). `@cert-authority` lines are ignored (no host
//! certificates). Lines that do not parse are skipped.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use russh::keys::{Algorithm, PublicKey};
use sha1::{Digest, Sha1};

use super::HostError;

/// The parsed entries of one known_hosts file.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    /// Where the entries came from, for messages.
    source: String,
}

#[derive(Clone, Debug)]
struct Entry {
    marker: Marker,
    patterns: Vec<Pattern>,
    key: PublicKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Clone, Debug)]
enum Pattern {
    Plain { negated: bool, glob: String },
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

impl KnownHosts {
    /// Reads and parses a known_hosts file.
    pub fn load(path: &Path) -> Result<KnownHosts, HostError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            HostError::HostKey(format!("cannot read known_hosts file {}: {e}", path.display()))
        })?;
        Ok(KnownHosts::parse(&text, &path.display().to_string()))
    }

    /// Parses known_hosts text; `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> KnownHosts {
        let entries = text.lines().filter_map(parse_line).collect();
        KnownHosts { entries, source: source.to_string() }
    }

    /// `Ok` when a line for `host:port` holds `key`; `HostKey` when lines for the host exist but none holds it
    /// (or the key is revoked), or when the host is not in the file at all.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Result<(), HostError> {
        let name = host_name(host, port);
        let lines: Vec<&Entry> = self.entries.iter().filter(|e| e.matches(&name)).collect();
        let same = |e: &&&Entry| e.key.key_data() == key.key_data();
        if lines.iter().filter(|e| e.marker == Marker::Revoked).any(|e| same(&e)) {
            return Err(HostError::HostKey(format!(
                "host key of {name} is marked @revoked in {}",
                self.source
            )));
        }
        let known: Vec<&&Entry> = lines.iter().filter(|e| e.marker == Marker::None).collect();
        if known.iter().any(same) {
            Ok(())
        } else if known.is_empty() {
            Err(self.not_known(&name))
        } else {
            Err(HostError::HostKey(mismatch(&name)))
        }
    }

    /// The key algorithms on record for `host:port`, in `preferred` order: what to offer in the key exchange,
    /// so that a server with several host keys shows one we know. `HostKey` when the host is not on record.
    pub fn algorithms(
        &self,
        host: &str,
        port: u16,
        preferred: &[Algorithm],
    ) -> Result<Vec<Algorithm>, HostError> {
        let name = host_name(host, port);
        let known: Vec<Algorithm> = self
            .entries
            .iter()
            .filter(|e| e.marker == Marker::None && e.matches(&name))
            .map(|e| e.key.algorithm())
            .collect();
        let offered: Vec<Algorithm> =
            preferred.iter().filter(|a| known.iter().any(|k| same_family(a, k))).cloned().collect();
        if offered.is_empty() {
            return Err(self.not_known(&name));
        }
        Ok(offered)
    }

    fn not_known(&self, name: &str) -> HostError {
        HostError::HostKey(format!("{name} is not in known_hosts file {}", self.source))
    }
}

impl Entry {
    /// OpenSSH semantics: a negated pattern that matches excludes the line; otherwise any positive match selects it.
    fn matches(&self, name: &str) -> bool {
        let mut selected = false;
        for pattern in &self.patterns {
            match pattern {
                Pattern::Plain { negated, glob } => {
                    if glob_match(glob.as_bytes(), name.as_bytes()) {
                        if *negated {
                            return false;
                        }
                        selected = true;
                    }
                }
                Pattern::Hashed { salt, hash } => {
                    if hmac_sha1(salt, name.as_bytes()).as_slice() == hash.as_slice() {
                        selected = true;
                    }
                }
            }
        }
        selected
    }
}

/// What is wrong when a host's key is not the one on record.
pub(super) fn mismatch(name: &str) -> String {
    format!("host key of {name} does not match known_hosts (possible man-in-the-middle)")
}

/// The name OpenSSH records for a host: `host` on port 22, `[host]:port` otherwise.
pub(super) fn host_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut hosts = fields.next()?;
    let marker = match hosts {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        hosts = fields.next()?;
    }
    let key_type = fields.next()?;
    let key_base64 = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_base64}")).ok()?;
    let patterns =
        hosts.split(',').filter(|p| !p.is_empty()).map(parse_pattern).collect::<Option<Vec<_>>>()?;
    Some(Entry { marker, patterns, key })
}

fn parse_pattern(pattern: &str) -> Option<Pattern> {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        let (salt, hash) = hashed.split_once('|')?;
        return Some(Pattern::Hashed { salt: BASE64.decode(salt).ok()?, hash: BASE64.decode(hash).ok()? });
    }
    let (negated, glob) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    Some(Pattern::Plain { negated, glob: glob.to_ascii_lowercase() })
}

/// `*` matches any run of characters, `?` any one character.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// RSA keys are one family whatever the signature hash.
fn same_family(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// HMAC-SHA1 (RFC 2104), as used by hashed known_hosts entries.
fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        let digest = Sha1::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha1::new().chain_update(&inner_pad).chain_update(message).finalize();
    Sha1::new().chain_update(&outer_pad).chain_update(inner).finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIYQGHY+pkgf0lu5Irs62byLBKEh3yL/W09bvrOWq+48";
    const OTHER_ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7Bpf924aKbDSk6VxpcXIFOXNN3TSs8RI+KbYUcEBvU";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJprjoYgUWf5xY5A55iGz1nCUTWlVJ0Y5Ch0Ct0rMRhaJ28UY4fRCc53znyprPUYeH+8c3oaGj64uKNIulvURdI=";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC1wvHHqpxeVb7sWMfFrjxkOtc3qHKm7qkaiNB8WOUmyrRY9QRVI3nFpT26q/Kfk+DpeMiOf5wBkSxc34bhUB61AaKr9CUY5IWrC/PQkyt3KcG6OhjNdobvfzNvSQ5EAv7Xiv8lIf+ZmdnLStn+QAQTh6WyWidiGa5IBzSGBshCew==";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn check(file: &str, host: &str, port: u16, server_key: &str) -> String {
        match KnownHosts::parse(file, "known_hosts").check(host, port, &key(server_key)) {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn plain_host_on_port_22() {
        let file = format!("# a comment\n\n10.0.0.1 {ED25519} root@web-1\n");
        assert_eq!(check(&file, "10.0.0.1", 22, ED25519), "ok");
        assert_eq!(
            check(&file, "10.0.0.1", 22, OTHER_ED25519),
            "host key rejected: host key of 10.0.0.1 does not match known_hosts (possible man-in-the-middle)"
        );
        assert_eq!(
            check(&file, "10.0.0.2", 22, ED25519),
            "host key rejected: 10.0.0.2 is not in known_hosts file known_hosts"
        );
        // A plain entry is for port 22 only.
        assert_eq!(
            check(&file, "10.0.0.1", 2222, ED25519),
            "host key rejected: [10.0.0.1]:2222 is not in known_hosts file known_hosts"
        );
    }

    #[test]
    fn bracketed_host_and_port() {
        let file = format!("[127.0.0.1]:2222 {ED25519}\n");
        assert_eq!(check(&file, "127.0.0.1", 2222, ED25519), "ok");
        assert!(check(&file, "127.0.0.1", 2223, ED25519).contains("not in known_hosts"));
        assert!(check(&file, "127.0.0.1", 2222, OTHER_ED25519).contains("does not match"));
    }

    #[test]
    fn several_names_and_key_types() {
        let file =
            format!("web-1,98.93.194.3 {ECDSA}\nweb-1,98.93.194.3 {RSA}\nweb-1,98.93.194.3 {ED25519}\n");
        for k in [ECDSA, RSA, ED25519] {
            assert_eq!(check(&file, "98.93.194.3", 22, k), "ok");
            assert_eq!(check(&file, "WEB-1", 22, k), "ok");
        }
        assert!(check(&file, "web-1", 22, OTHER_ED25519).contains("does not match"));
    }

    #[test]
    fn hashed_entries() {
        // Made by `ssh-keygen -H` from `[127.0.0.1]:2222 ...` and `10.0.0.1 ...`.
        let file = format!(
            "|1|+xEiBzwP1wgy3/csFp8a/+SPij0=|AydFtX0svXxl3VPs/yktd2f818U= {ED25519}\n\
             |1|cOTOt9Ylf8iUcrvSvjokVHp2yHM=|gJzlOierrkL2fMgMJfrWTSJ0pwc= {ED25519}\n"
        );
        assert_eq!(check(&file, "127.0.0.1", 2222, ED25519), "ok");
        assert_eq!(check(&file, "10.0.0.1", 22, ED25519), "ok");
        assert!(check(&file, "10.0.0.1", 22, OTHER_ED25519).contains("does not match"));
        assert!(check(&file, "10.0.0.3", 22, ED25519).contains("not in known_hosts"));
    }

    #[test]
    fn wildcards_and_negation() {
        let file = format!("*.example.com,!bad.example.com {ED25519}\n10.0.0.? {ED25519}\n");
        assert_eq!(check(&file, "web.example.com", 22, ED25519), "ok");
        assert!(check(&file, "bad.example.com", 22, ED25519).contains("not in known_hosts"));
        assert_eq!(check(&file, "10.0.0.7", 22, ED25519), "ok");
        assert!(check(&file, "10.0.0.17", 22, ED25519).contains("not in known_hosts"));
    }

    #[test]
    fn revoked_and_cert_authority_lines() {
        let file =
            format!("@revoked 10.0.0.1 {ED25519}\n10.0.0.1 {ED25519}\n@cert-authority * {OTHER_ED25519}\n");
        assert!(check(&file, "10.0.0.1", 22, ED25519).contains("@revoked"));
        // A CA line is no host key.
        assert!(check(&file, "10.0.0.2", 22, OTHER_ED25519).contains("not in known_hosts"));
    }

    #[test]
    fn broken_lines_are_skipped() {
        let file = format!(
            "10.0.0.1 ssh-ed25519 not-base64\n10.0.0.1\n@bogus 10.0.0.1 {ED25519}\n10.0.0.1 {ED25519}\n"
        );
        assert_eq!(check(&file, "10.0.0.1", 22, ED25519), "ok");
    }

    #[test]
    fn algorithms_on_record() {
        let file = format!("[h]:2222 {RSA}\n[h]:2222 {ECDSA}\nh {ED25519}\n");
        let preferred = russh::Preferred::DEFAULT.key;
        let known = KnownHosts::parse(&file, "f");
        let names: Vec<String> =
            known.algorithms("h", 2222, &preferred).unwrap().iter().map(|a| a.to_string()).collect();
        assert_eq!(names, ["ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]);
        let unknown = known.algorithms("x", 22, &preferred).unwrap_err().to_string();
        assert_eq!(unknown, "host key rejected: x is not in known_hosts file f");
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        let digest = hmac_sha1(&[0x0b; 20], b"Hi There");
        assert_eq!(hex::encode(digest), "b617318655057264e28bc0b6fb378c8ef146be00");
    }
}
