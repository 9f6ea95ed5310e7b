//! Standard base64 (RFC 4648, with padding), which the guest init decodes
//! with busybox `base64 -d`. A dozen lines do not justify a dependency.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `data` as standard, padded base64.
pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // chunk.len() + 1 output characters carry data; the rest is padding.
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn uses_plus_and_slash() {
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    /// The guest decodes with `base64 -d`; the host's coreutils implement the
    /// same RFC, so a round trip through it checks every byte value.
    #[test]
    fn round_trips_through_base64_d() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let data: Vec<u8> = (0..=255u8)
            .chain(b"echo 'a \"b\"' $x\n".iter().copied())
            .collect();
        let Ok(mut child) = Command::new("base64")
            .arg("-d")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("no base64 binary on this host; skipping the round trip");
            return;
        };
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(encode(&data).as_bytes()).expect("write");
        drop(stdin);
        let out = child.wait_with_output().expect("base64 -d");
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
