//! The little of the tar format Docker's archive API needs here: a few small files written (with their folders),
//! and the regular files of an archive read back. Pure: no I/O.

use std::collections::BTreeSet;

/// A tar archive of `files`, each a relative path (`a/b/file`) and its content, with an entry for each folder on
/// the way (once).
pub(super) fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut folders = BTreeSet::new();
    for (path, content) in files {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for depth in 1..parts.len() {
            let folder = format!("{}/", parts[..depth].join("/"));
            if folders.insert(folder.clone()) {
                out.extend_from_slice(&header(&folder, 0, b'5', 0o755));
            }
        }
        out.extend_from_slice(&header(&parts.join("/"), content.len(), b'0', 0o644));
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    // Two zero blocks end an archive.
    out.resize(out.len() + 1024, 0);
    out
}

/// The regular files of an archive: (path, content). Folders, links and extended headers are skipped; `Err` when
/// the archive is cut short or a header is not one.
pub(super) fn files(archive: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= archive.len() {
        let block = &archive[at..at + 512];
        if block.iter().all(|b| *b == 0) {
            break;
        }
        let size = octal(&block[124..136]).ok_or("a tar header with a bad size")?;
        let start = at + 512;
        let end =
            start.checked_add(size).filter(|end| *end <= archive.len()).ok_or("a tar archive cut short")?;
        let kind = block[156];
        if kind == b'0' || kind == 0 {
            let name = text(&block[0..100]);
            let prefix = text(&block[345..500]);
            let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            out.push((path, archive[start..end].to_vec()));
        }
        at = start + size.div_ceil(512) * 512;
    }
    Ok(out)
}

/// A ustar header of `name`, `size` bytes long, of type `kind` (`0` file, `5` folder).
fn header(name: &str, size: usize, kind: u8, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let name = name.as_bytes();
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is taken with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn octal(field: &[u8]) -> Option<usize> {
    let digits = text(field);
    let digits = digits.trim();
    if digits.is_empty() {
        return Some(0);
    }
    usize::from_str_radix(digits, 8).ok()
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_written_read_back_with_their_folders_skipped() {
        let written =
            archive(&[("ballast/upstreams/web", b"172.18.0.3:3000"), ("ballast/upstreams/api", b"x")]);
        assert_eq!(written.len() % 512, 0);
        assert_eq!(written.len(), 512 * 8, "2 folders once, 2 files of one block each, 2 end blocks");
        let read = files(&written).unwrap();
        assert_eq!(
            read,
            vec![
                ("ballast/upstreams/web".to_string(), b"172.18.0.3:3000".to_vec()),
                ("ballast/upstreams/api".to_string(), b"x".to_vec())
            ]
        );
        assert_eq!(files(&archive(&[("empty", b"")])).unwrap(), vec![("empty".to_string(), Vec::new())]);
    }

    #[test]
    fn headers_carry_a_valid_checksum() {
        let written = archive(&[("a/b", b"x")]);
        for block in [&written[0..512], &written[512..1024]] {
            let stored = usize::from_str_radix(text(&block[148..154]).trim(), 8).unwrap();
            let sum: usize = block
                .iter()
                .enumerate()
                .map(|(i, b)| if (148..156).contains(&i) { 32 } else { usize::from(*b) })
                .sum();
            assert_eq!(stored, sum);
        }
    }

    #[test]
    fn a_cut_archive_is_an_error() {
        let written = archive(&[("web", &[b'x'; 600])]);
        assert!(files(&written[..1024]).is_err());
        assert_eq!(files(&[]).unwrap(), Vec::new());
    }
}
