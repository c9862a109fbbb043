//! Reading small files the user names (key files, config files) without trusting them: the
//! open never blocks (a FIFO), anything but a regular file is refused, and no more than a
//! bound is ever read (`/dev/zero`, a huge file).

use std::io::Read;
use std::path::Path;

/// Why [`read_bounded`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    /// Opening, stat-ing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a regular file (`what` names it: "FIFO", "character device", "directory", …).
    #[error("it is a {what}, not a regular file")]
    NotRegular {
        /// What it is.
        what: &'static str,
    },
    /// Larger than the bound.
    #[error("it is {size} bytes, more than the {max} accepted")]
    TooBig {
        /// Its size (or "more than max" when it grew while being read).
        size: String,
        /// The bound.
        max: u64,
    },
}

/// The whole of the regular file `path`, at most `max` bytes. The buffer is allocated once
/// (`max + 1` bytes) and never grows, so a caller holding secrets can zeroize it.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, BoundedReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(BoundedReadError::NotRegular {
            what: crate::error::file_type_name(&meta.file_type()),
        });
    }
    if meta.len() > max {
        return Err(BoundedReadError::TooBig {
            size: meta.len().to_string(),
            max,
        });
    }
    let mut bytes = Vec::with_capacity(max as usize + 1);
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(BoundedReadError::TooBig {
            size: format!("more than {max}"),
            max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refuses_devices_directories_and_big_files_reads_small_ones() {
        let e = read_bounded(Path::new("/dev/zero"), 1024)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "it is a character device, not a regular file");
        let d = tempfile::tempdir().unwrap();
        let e = read_bounded(d.path(), 1024).unwrap_err().to_string();
        assert_eq!(e, "it is a directory, not a regular file");
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'x'; 2000]).unwrap();
        let e = read_bounded(&big, 1024).unwrap_err().to_string();
        assert_eq!(e, "it is 2000 bytes, more than the 1024 accepted");
        let ok = d.path().join("ok");
        std::fs::write(&ok, b"hello").unwrap();
        assert_eq!(read_bounded(&ok, 5).unwrap(), b"hello");
    }
}
