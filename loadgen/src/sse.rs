//! Just enough of the Server-Sent Events format: frames with `event`, `id`
//! and `data`, split by blank lines, whatever the chunk boundaries.

use std::collections::VecDeque;

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The `event:` type; `message` when the frame has none.
    pub event: String,
    /// The frame's own `id:` line, if it had one.
    pub id: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// An incremental SSE parser: feed it bytes as they arrive, collect frames.
///
/// Lines end with LF, CRLF or a lone CR, and a CRLF split across two chunks
/// counts once. Comments (`: ping`) and `retry:` are skipped. As in the
/// EventSource spec, a frame without `data:` is not dispatched.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    id: Option<String>,
    data: String,
    has_data: bool,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `chunk`, appending every frame it completes to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut VecDeque<Frame>) {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..end]);
            self.end_line(out);
            let crlf = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if crlf {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(chunk);
    }

    fn end_line(&mut self, out: &mut VecDeque<Frame>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
        } else if line[0] != b':' {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &[][..]),
            };
            let value = String::from_utf8_lossy(value);
            match name {
                b"event" => self.event = value.into_owned(),
                b"id" => self.id = Some(value.into_owned()),
                b"data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(&value);
                    self.has_data = true;
                }
                _ => {} // retry and unknown fields
            }
        }
        // Reuse the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, out: &mut VecDeque<Frame>) {
        let event = std::mem::take(&mut self.event);
        let id = self.id.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        out.push_back(Frame {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            id,
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "retry: 3000\n\nevent: ready\ndata: {\"sub\":\"alice\",\"topics\":[\"orders/*\"]}\n\n\
        : ping\n\nid: 01937a9e-8b0a-7c3d-9f1e-2a4b6c8d0e1f\nevent: order.updated\ndata: {\"id\":42}\n\n\
        id: 01937a9e-9c41-7e02-8d3a-6b5c4d3e2f10\ndata: \"hello\"\ndata:second\n\n\
        event: close\ndata: {\"reason\":\"shutdown\"}\n\n";

    fn parse_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Frame> {
        let mut parser = Parser::new();
        let mut out = VecDeque::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            parser.feed(&bytes[start..cut], &mut out);
            start = cut;
        }
        out.into_iter().collect()
    }

    fn expected() -> Vec<Frame> {
        vec![
            Frame {
                event: "ready".into(),
                id: None,
                data: r#"{"sub":"alice","topics":["orders/*"]}"#.into(),
            },
            Frame {
                event: "order.updated".into(),
                id: Some("01937a9e-8b0a-7c3d-9f1e-2a4b6c8d0e1f".into()),
                data: r#"{"id":42}"#.into(),
            },
            Frame {
                event: "message".into(),
                id: Some("01937a9e-9c41-7e02-8d3a-6b5c4d3e2f10".into()),
                data: "\"hello\"\nsecond".into(),
            },
            Frame {
                event: "close".into(),
                id: None,
                data: r#"{"reason":"shutdown"}"#.into(),
            },
        ]
    }

    #[test]
    fn parses_whole_stream() {
        assert_eq!(parse_in_pieces(STREAM.as_bytes(), &[]), expected());
    }

    #[test]
    fn any_single_split_gives_the_same_frames() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(parse_in_pieces(bytes, &[cut]), expected(), "cut at {cut}");
        }
    }

    #[test]
    fn byte_by_byte_with_crlf_and_cr() {
        for newline in ["\r\n", "\r"] {
            let text = STREAM.replace('\n', newline);
            let bytes = text.as_bytes();
            let cuts: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(parse_in_pieces(bytes, &cuts), expected(), "{newline:?}");
            for cut in 0..=bytes.len() {
                assert_eq!(
                    parse_in_pieces(bytes, &[cut]),
                    expected(),
                    "{newline:?} {cut}"
                );
            }
        }
    }

    #[test]
    fn incomplete_frame_waits() {
        let frames = parse_in_pieces(b"event: ready\ndata: {}\n", &[]);
        assert!(frames.is_empty());
    }
}
