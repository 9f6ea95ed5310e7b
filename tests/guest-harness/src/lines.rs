//! Reading a child's output one line at a time.

use std::io::{BufRead, BufReader, Read};

/// Calls `f` with every line `pipe` delivers until it ends, without the
/// line end: the 8250 console ends lines with `\r\n`, and keeps neither.
/// Bytes that are not UTF-8 are replaced, never a reason to stop.
pub(crate) fn for_each_line(pipe: impl Read, mut f: impl FnMut(String)) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        f(String::from_utf8_lossy(&buf).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_line_ends_and_keeps_a_last_unterminated_line() {
        let mut got = Vec::new();
        for_each_line(&b"a\r\nb\n\nc\xffd"[..], |l| got.push(l));
        assert_eq!(got, ["a", "b", "", "c\u{fffd}d"]);
    }
}
