//! SSE as a client reads it: frames off a response, or off any stream of
//! body chunks, however the bytes are cut into chunks.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use serde_json::Value;

use super::PATIENCE;

/// One SSE frame as a client parses it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Frame {
    pub comment: Option<String>,
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub retry: Option<u64>,
}

impl Frame {
    /// The `data` parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("a data field")).expect("JSON data")
    }
}

/// Reads SSE frames off a streaming response, comments included (the
/// `EventSource` API hides them, but heartbeats are comments).
pub struct SseStream {
    body: BoxStream<'static, Result<Bytes, String>>,
    /// Bytes not yet parsed. A frame is decoded only once its blank line is
    /// in: a character split across chunks is whole by then.
    buffer: Vec<u8>,
    /// Where the line being scanned starts, and how far it was scanned.
    line_start: usize,
    scanned: usize,
    /// The last frame ended on a lone `\r`: a `\n` next ends that same line.
    after_cr: bool,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self::from_chunks(
            response
                .bytes_stream()
                .map(|chunk| chunk.map_err(|e| e.to_string())),
        )
    }

    /// Frames from any stream of body chunks (an HTTP/2 stream, for one).
    pub fn from_chunks(
        chunks: impl futures_util::Stream<Item = Result<Bytes, String>> + Send + 'static,
    ) -> Self {
        Self {
            body: chunks.boxed(),
            buffer: Vec::new(),
            line_start: 0,
            scanned: 0,
            after_cr: false,
        }
    }

    /// The next frame; panics if none comes within [`PATIENCE`] or the stream ends.
    pub async fn next_frame(&mut self) -> Frame {
        self.try_next_frame(PATIENCE)
            .await
            .expect("a frame before the stream ended")
    }

    /// The next frame, `None` if the stream ends; panics on a timeout.
    pub async fn try_next_frame(&mut self, patience: Duration) -> Option<Frame> {
        tokio::time::timeout(patience, async {
            loop {
                if self.after_cr && !self.buffer.is_empty() {
                    if self.buffer.first() == Some(&b'\n') {
                        self.buffer.remove(0);
                    }
                    self.after_cr = false;
                }
                if let Some(end) = self.frame_end() {
                    let rest = self.buffer.split_off(end);
                    let raw = std::mem::replace(&mut self.buffer, rest);
                    self.after_cr = raw.last() == Some(&b'\r');
                    return Some(parse_frame(
                        std::str::from_utf8(&raw).expect("a UTF-8 frame"),
                    ));
                }
                match self.body.next().await {
                    Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("a frame or the end of the stream in time")
    }

    /// The length of the first frame in the buffer, the blank line that ends
    /// it included, once that has arrived. Lines end in `\r\n`, `\n` or `\r`
    /// (the SSE spec allows all three). Scans each byte once.
    fn frame_end(&mut self) -> Option<usize> {
        loop {
            let offset = match line_end(&self.buffer[self.scanned..]) {
                Ok(offset) => offset,
                Err(clean) => {
                    self.scanned += clean;
                    return None;
                }
            };
            let at = self.scanned + offset;
            let ending = match &self.buffer[at..] {
                [b'\r', b'\n', ..] => 2,
                // `\r\n` or `\r` alone: the next byte tells, unless the line is
                // blank (its frame ends either way).
                [b'\r'] if at != self.line_start => {
                    self.scanned = at;
                    return None;
                }
                _ => 1,
            };
            if at == self.line_start {
                (self.line_start, self.scanned) = (0, 0);
                return Some(at + ending);
            }
            self.line_start = at + ending;
            self.scanned = self.line_start;
        }
    }

    /// The next frame that is not a heartbeat.
    pub async fn next_event(&mut self) -> Frame {
        loop {
            let frame = self.next_frame().await;
            if frame.comment.is_none() {
                return frame;
            }
        }
    }

    /// Asserts the stream ends (after any heartbeats) without another event.
    pub async fn assert_ends(&mut self) {
        while let Some(frame) = self.try_next_frame(PATIENCE).await {
            assert!(
                frame.comment.is_some(),
                "expected the end of the stream, got {frame:?}"
            );
        }
    }
}

/// Where the first `\r` or `\n` in `bytes` is, or else how many bytes hold
/// none (up to a character still cut off). `str::find` does the scan: fast
/// even in a debug build.
fn line_end(bytes: &[u8]) -> Result<usize, usize> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            assert!(error.error_len().is_none(), "a UTF-8 stream: {error}");
            std::str::from_utf8(&bytes[..error.valid_up_to()]).expect("the valid part")
        }
    };
    let lf = text.find('\n');
    text[..lf.unwrap_or(text.len())]
        .find('\r')
        .or(lf)
        .ok_or(text.len())
}

fn parse_frame(raw: &str) -> Frame {
    let mut frame = Frame::default();
    // Splitting on both ends a `\r\n` with an empty line, ignored as the
    // blank line that ends the frame is.
    for line in raw.split('\n').flat_map(|line| line.split('\r')) {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comment = Some(comment.trim_start().to_owned());
            continue;
        }
        let (field, value) = line
            .split_once(':')
            .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "event" => frame.event = Some(value.to_owned()),
            "id" => frame.id = Some(value.to_owned()),
            "retry" => frame.retry = value.parse().ok(),
            "data" => {
                let data = frame.data.get_or_insert_with(String::new);
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    frame
}

mod tests {
    use serde_json::json;

    use super::*;

    /// A stream that delivers `raw` one byte per chunk, then ends.
    fn byte_by_byte(raw: &str) -> SseStream {
        let chunks: Vec<Result<Bytes, String>> = raw
            .bytes()
            .map(|byte| Ok(Bytes::from(vec![byte])))
            .collect();
        SseStream::from_chunks(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_character_split_across_chunks_is_read_whole() {
        let mut stream = byte_by_byte(
            "id: 1\ndata: \"caf\u{e9} \u{1F680}\"\n\nevent: \u{e9}t\u{e9}\ndata: 2\n\n",
        );
        let frame = stream.next_frame().await;
        assert_eq!(frame.id.as_deref(), Some("1"));
        assert_eq!(frame.json(), json!("caf\u{e9} \u{1F680}"));
        let frame = stream.next_frame().await;
        assert_eq!(frame.event.as_deref(), Some("\u{e9}t\u{e9}"));
        assert_eq!(frame.json(), json!(2));
        assert_eq!(stream.try_next_frame(PATIENCE).await, None);
    }

    #[tokio::test]
    async fn lines_may_end_in_crlf_lf_or_cr() {
        let raw = "retry: 5\r\n\r\n: ping\r\rid: 2\revent: e\r\ndata: a\ndata: b\r\r\nid: 3\n\n";
        for mut stream in [
            byte_by_byte(raw),
            SseStream::from_chunks(futures_util::stream::iter([Ok(Bytes::from(raw))])),
        ] {
            assert_eq!(stream.next_frame().await.retry, Some(5));
            assert_eq!(stream.next_frame().await.comment.as_deref(), Some("ping"));
            let frame = stream.next_frame().await;
            assert_eq!(
                (
                    frame.id.as_deref(),
                    frame.event.as_deref(),
                    frame.data.as_deref()
                ),
                (Some("2"), Some("e"), Some("a\nb"))
            );
            // The `\n` of the `\r\n` above was not taken for an empty frame.
            assert_eq!(stream.next_frame().await.id.as_deref(), Some("3"));
            assert_eq!(stream.try_next_frame(PATIENCE).await, None);
        }
    }
}
