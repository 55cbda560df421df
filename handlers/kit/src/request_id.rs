//! Request ids: the caller's `x-request-id` when it is sane, a fresh one otherwise.

/// The header both read and written.
pub const HEADER: &str = "x-request-id";

/// Returns the caller's id when it is 1 to 128 visible ASCII characters
/// (so it is safe to log and echo), otherwise a new UUID v4.
pub fn accept_or_generate(candidate: Option<&[u8]>) -> String {
    match candidate {
        Some(id) if is_sane(id) => String::from_utf8(id.to_vec()).expect("visible ASCII is UTF-8"),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

fn is_sane(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        assert_eq!(accept_or_generate(Some(b"abc-123")), "abc-123");
        let max = "a".repeat(128);
        assert_eq!(accept_or_generate(Some(max.as_bytes())), max);
        for bad in [
            &b""[..],
            b"has space",
            b"tab\t",
            "é".as_bytes(),
            "a".repeat(129).as_bytes(),
        ] {
            let id = accept_or_generate(Some(bad));
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} -> {id}");
        }
        assert!(uuid::Uuid::parse_str(&accept_or_generate(None)).is_ok());
    }
}
