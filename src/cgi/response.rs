//! The guest's response head (RFC 3875 §6): finding where it ends and turning it into HTTP.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

/// Longest header line accepted from a guest, excluding its line ending.
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// Largest header block accepted from a guest.
pub const MAX_HEAD: usize = 64 * 1024;

/// Headers that describe one connection, not the response; the server manages its own.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// Why a guest's output is not a valid CGI response. Every variant means 502 for the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the output ended before the blank line that ends the header block")]
    Unterminated,
    #[error("a header line is longer than {MAX_HEADER_LINE} bytes")]
    LineTooLong,
    #[error("the header block is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("header line {0} is not of the form `Name: value`")]
    MalformedLine(usize),
    #[error("header line {0} has a name with bytes HTTP does not allow")]
    InvalidName(usize),
    #[error("header line {0} has a value with bytes HTTP does not allow")]
    InvalidValue(usize),
    #[error("the Status header `{0}` is not a 3-digit status between 200 and 599")]
    InvalidStatus(String),
    #[error("the Status header appears more than once")]
    DuplicateStatus,
    #[error("the header block is empty")]
    Empty,
}

/// Where the guest's output stands with respect to its header block.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadSplit {
    /// No blank line yet; more output is needed.
    Incomplete,
    /// The head is `buf[..head_len]`; the body starts at `buf[body_start..]`.
    Complete { head_len: usize, body_start: usize },
}

/// Finds the blank line ending the header block in the output received so far, enforcing the
/// line and block size limits as early as possible so a hostile guest cannot make us buffer.
pub fn split_head(buf: &[u8]) -> Result<HeadSplit, HeadError> {
    let mut line_start = 0;
    while let Some(offset) = buf[line_start..].iter().position(|&b| b == b'\n') {
        let line_end = line_start + offset;
        let line = strip_cr(&buf[line_start..line_end]);
        if line.len() > MAX_HEADER_LINE {
            return Err(HeadError::LineTooLong);
        }
        if line.is_empty() {
            return Ok(HeadSplit::Complete {
                head_len: line_start,
                body_start: line_end + 1,
            });
        }
        line_start = line_end + 1;
        if line_start > MAX_HEAD {
            return Err(HeadError::HeadTooLarge);
        }
    }
    if buf.len() - line_start > MAX_HEADER_LINE + 1 {
        return Err(HeadError::LineTooLong);
    }
    if buf.len() > MAX_HEAD {
        return Err(HeadError::HeadTooLarge);
    }
    Ok(HeadSplit::Incomplete)
}

/// What the server does with a response head.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseKind {
    /// Send the head and stream the body to the client.
    Document { status: StatusCode },
    /// A `Location` that is a local path and no `Status`: the server fetches that path
    /// itself with a GET and the client sees only that response (RFC 3875 §6.2.2).
    LocalRedirect { location: String },
}

/// A parsed, validated response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub kind: ResponseKind,
    /// Headers for the client: `Status` removed, hop-by-hop headers dropped.
    pub headers: HeaderMap,
}

/// Parses a header block (without its terminating blank line), lines ending in LF or CRLF.
pub fn parse_response_head(head: &[u8]) -> Result<ResponseHead, HeadError> {
    let mut headers = HeaderMap::new();
    let mut status: Option<StatusCode> = None;

    // `split_head` includes the last header line's terminator; without it, every line is
    // a header line.
    let head = head.strip_suffix(b"\n").unwrap_or(head);
    let lines = head.split(|&b| b == b'\n').filter(|_| !head.is_empty());
    for (index, raw_line) in lines.enumerate() {
        let line_number = index + 1;
        let line = strip_cr(raw_line);
        let colon = line.iter().position(|&b| b == b':');
        let (name, value) = match colon {
            // A leading space or tab is an obsolete line folding: refused, as RFC 9112 allows.
            Some(colon) if colon > 0 && !line[0].is_ascii_whitespace() => {
                (&line[..colon], trim_ows(&line[colon + 1..]))
            }
            _ => return Err(HeadError::MalformedLine(line_number)),
        };
        let name = HeaderName::from_bytes(name).map_err(|_| HeadError::InvalidName(line_number))?;
        let value =
            HeaderValue::from_bytes(value).map_err(|_| HeadError::InvalidValue(line_number))?;

        if name.as_str() == "status" {
            if status.is_some() {
                return Err(HeadError::DuplicateStatus);
            }
            status = Some(parse_status(&value)?);
        } else if !HOP_BY_HOP.contains(&name) {
            headers.append(name, value);
        }
    }

    if status.is_none() && headers.is_empty() {
        return Err(HeadError::Empty);
    }

    let kind = match (status, headers.get(header::LOCATION)) {
        (Some(status), _) => ResponseKind::Document { status },
        (None, Some(location)) if is_local_path(location.as_bytes()) => {
            // Validated by HeaderValue: visible ASCII or obs-text; only ASCII is a local path.
            match location.to_str() {
                Ok(location) => ResponseKind::LocalRedirect {
                    location: location.to_string(),
                },
                Err(_) => return Err(HeadError::InvalidValue(0)),
            }
        }
        (None, Some(_)) => ResponseKind::Document {
            status: StatusCode::FOUND,
        },
        (None, None) => ResponseKind::Document {
            status: StatusCode::OK,
        },
    };
    Ok(ResponseHead { kind, headers })
}

/// `Status: 404 Not Found` → 404. The reason phrase is not kept; HTTP/2 has none anyway.
fn parse_status(value: &HeaderValue) -> Result<StatusCode, HeadError> {
    let invalid = || HeadError::InvalidStatus(String::from_utf8_lossy(value.as_bytes()).into());
    let code = value
        .as_bytes()
        .split(|&b| b == b' ')
        .next()
        .unwrap_or_default();
    if code.len() != 3 {
        return Err(invalid());
    }
    let status = StatusCode::from_bytes(code).map_err(|_| invalid())?;
    if status.as_u16() < 200 {
        return Err(invalid());
    }
    Ok(status)
}

/// A path on this server (`/x`), as opposed to a URL or a network-path reference (`//host/x`).
fn is_local_path(location: &[u8]) -> bool {
    location.starts_with(b"/") && !location.starts_with(b"//")
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(output: &[u8]) -> Result<(ResponseHead, &[u8]), HeadError> {
        match split_head(output)? {
            HeadSplit::Incomplete => Err(HeadError::Unterminated),
            HeadSplit::Complete {
                head_len,
                body_start,
            } => Ok((
                parse_response_head(&output[..head_len])?,
                &output[body_start..],
            )),
        }
    }

    fn status_of(head: &ResponseHead) -> u16 {
        match head.kind {
            ResponseKind::Document { status } => status.as_u16(),
            ResponseKind::LocalRedirect { .. } => panic!("not a document"),
        }
    }

    #[test]
    fn lf_and_crlf_heads_both_parse() {
        for output in [
            &b"Content-Type: text/plain\n\nhello"[..],
            b"Content-Type: text/plain\r\n\r\nhello",
            b"Content-Type:text/plain  \r\n\nhello",
        ] {
            let (head, body) = parse(output).unwrap();
            assert_eq!(status_of(&head), 200);
            assert_eq!(head.headers[header::CONTENT_TYPE], "text/plain");
            assert_eq!(body, b"hello");
        }
    }

    #[test]
    fn status_header_sets_the_status_and_is_not_forwarded() {
        let (head, _) = parse(b"Status: 404 Not Found\nContent-Type: text/html\n\n").unwrap();
        assert_eq!(status_of(&head), 404);
        assert!(!head.headers.contains_key("status"));
        for bad in [
            &b"Status: 4044\n\n"[..],
            b"Status: abc\n\n",
            b"Status: 101\n\n",
        ] {
            assert!(matches!(parse(bad), Err(HeadError::InvalidStatus(_))));
        }
        assert_eq!(
            parse(b"Status: 200\nStatus: 201\n\n").err(),
            Some(HeadError::DuplicateStatus)
        );
    }

    #[test]
    fn locations_pick_redirect_kinds() {
        let (head, _) = parse(b"Location: https://example.test/x\n\n").unwrap();
        assert_eq!(status_of(&head), 302);
        let (head, _) = parse(b"Location: //example.test/x\n\n").unwrap();
        assert_eq!(status_of(&head), 302);
        let (head, _) = parse(b"Location: /local?q=1\n\n").unwrap();
        assert_eq!(
            head.kind,
            ResponseKind::LocalRedirect {
                location: "/local?q=1".into()
            }
        );
        let (head, _) = parse(b"Status: 301\nLocation: /moved\n\n").unwrap();
        assert_eq!(status_of(&head), 301);
        assert_eq!(head.headers[header::LOCATION], "/moved");
    }

    #[test]
    fn repeated_headers_are_all_kept_and_hop_by_hop_dropped() {
        let (head, _) = parse(
            b"Set-Cookie: a=1\nSet-Cookie: b=2\nConnection: close\nTransfer-Encoding: chunked\nX-A: 1\n\n",
        )
        .unwrap();
        let cookies: Vec<_> = head.headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(!head.headers.contains_key(header::CONNECTION));
        assert!(!head.headers.contains_key(header::TRANSFER_ENCODING));
        assert_eq!(head.headers["x-a"], "1");
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(
            parse(b"hello world\n\n").err(),
            Some(HeadError::MalformedLine(1))
        );
        assert_eq!(
            parse(b"X-A: 1\n folded\n\n").err(),
            Some(HeadError::MalformedLine(2))
        );
        assert_eq!(
            parse(b": no name\n\n").err(),
            Some(HeadError::MalformedLine(1))
        );
        assert_eq!(
            parse(b"Bad Name: x\n\n").err(),
            Some(HeadError::InvalidName(1))
        );
        assert_eq!(
            parse(b"X-A: a\x00b\n\n").err(),
            Some(HeadError::InvalidValue(1))
        );
        assert_eq!(
            parse(b"X-A: a\rSet-Cookie: x\n\n").err(),
            Some(HeadError::InvalidValue(1))
        );
        assert_eq!(parse(b"\n\nbody").err(), Some(HeadError::Empty));
        assert_eq!(
            parse(b"Content-Type: text/plain\n").err(),
            Some(HeadError::Unterminated)
        );
    }

    #[test]
    fn size_limits_are_enforced_before_the_head_ends() {
        let long_line = vec![b'a'; MAX_HEADER_LINE + 10];
        assert_eq!(split_head(&long_line), Err(HeadError::LineTooLong));
        let mut many_lines = Vec::new();
        while many_lines.len() <= MAX_HEAD {
            many_lines.extend_from_slice(b"X-Filler: 0123456789abcdef\n");
        }
        assert_eq!(split_head(&many_lines), Err(HeadError::HeadTooLarge));
        let at_limit = [vec![b'x'; MAX_HEADER_LINE], b"\r".to_vec()].concat();
        assert_eq!(split_head(&at_limit), Ok(HeadSplit::Incomplete));
    }
}
