//! Lines from a child process that may misbehave (a plugin probe, a plugin server): each
//! line is capped, so a plugin that writes one endless line costs the host a bounded amount
//! of memory and is treated as talking garbage.

use std::io::{self, BufRead, Read};

/// The longest line a child may send: a manifest with a large configuration schema, or a
/// monitoring answer, fits many times over.
pub const MAX_LINE: usize = 64 << 20;

/// The next line without its `\n`; `None` at the end of the stream. A line longer than
/// `limit` bytes, or one that is not UTF-8, is an [`io::ErrorKind::InvalidData`] error.
pub fn read_line<R: BufRead>(reader: &mut R, limit: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a line longer than {limit} bytes"),
        ));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_whole_and_long_ones_refused() {
        let mut input = io::Cursor::new(b"one\ntwo\nlast".to_vec());
        assert_eq!(read_line(&mut input, 8).unwrap().as_deref(), Some("one"));
        assert_eq!(read_line(&mut input, 8).unwrap().as_deref(), Some("two"));
        assert_eq!(read_line(&mut input, 8).unwrap().as_deref(), Some("last"));
        assert_eq!(read_line(&mut input, 8).unwrap(), None);

        let mut endless = io::Cursor::new(vec![b'x'; 100]);
        let err = read_line(&mut endless, 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut exact = io::Cursor::new(b"0123456789\n".to_vec());
        assert_eq!(
            read_line(&mut exact, 10).unwrap().as_deref(),
            Some("0123456789")
        );
    }
}
