//! Where a rendered body goes: the template engine writes into a
//! `BodyWriter`, which puts the text straight into the message's buffer in
//! the agency's encoding (the XML declaration first). No rendered text is
//! held twice, and the buffer becomes the `Bytes` that the gateway audits
//! and sends without copying.

use std::io;

use bytes::Bytes;
use encoding_rs::{Encoder, EncoderResult, Encoding};

/// How an agency's XML is written: the label its declaration names and the
/// encoding it stands for.
#[derive(Debug, Clone)]
pub(super) struct Charset {
    pub label: String,
    encoding: &'static Encoding,
    /// `<?xml ... encoding="<label>"?>` and a line break.
    declaration: String,
    /// The content type of a message that names none of its own.
    pub xml_content_type: String,
}

impl Charset {
    pub fn new(label: &str, encoding: &'static Encoding) -> Self {
        Self {
            label: label.to_owned(),
            encoding,
            declaration: format!("<?xml version=\"1.0\" encoding=\"{label}\"?>\n"),
            xml_content_type: format!("application/xml; charset={label}"),
        }
    }
}

/// Why a body could not be written.
#[derive(Debug)]
pub(super) struct Unmappable;

/// A body being rendered.
pub(super) struct BodyWriter {
    out: Vec<u8>,
    /// None: the text is written as it is (UTF-8, or JSON).
    encoder: Option<Encoder>,
    /// Whether the encoding writes ASCII as ASCII, with no state to mind:
    /// then an ASCII piece (most of a message: its markup) is copied into
    /// the buffer as it is, not run through the encoder.
    ascii_as_is: bool,
    /// Whether anything but white space was written: an XML body's leading
    /// white space is dropped, so the declaration stays the first line.
    started: bool,
    unmappable: bool,
}

impl BodyWriter {
    /// A JSON body, written as rendered.
    pub fn plain(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
            encoder: None,
            ascii_as_is: true,
            started: true,
            unmappable: false,
        }
    }

    /// An XML body in `charset`, its declaration already written.
    pub fn xml(charset: &Charset, capacity: usize) -> Result<Self, Unmappable> {
        // encoding_rs writes UTF-16 labels as UTF-8 (its output encoding),
        // as `Encoding::encode` always did here.
        let output = charset.encoding.output_encoding();
        let mut writer = Self {
            out: Vec::with_capacity(capacity),
            encoder: (output != encoding_rs::UTF_8).then(|| output.new_encoder()),
            // ISO-2022-JP is the one stateful encoder; it is not
            // ASCII-compatible.
            ascii_as_is: output.is_ascii_compatible(),
            started: true,
            unmappable: false,
        };
        writer.push(&charset.declaration)?;
        writer.started = false;
        Ok(writer)
    }

    /// Whether the text asked for a character the encoding lacks.
    pub fn was_unmappable(&self) -> bool {
        self.unmappable
    }

    /// The body, once the template has rendered.
    pub fn finish(mut self) -> Result<Bytes, Unmappable> {
        if let Some(encoder) = &mut self.encoder {
            // Stateful encodings end in their initial state.
            encode(encoder, "", &mut self.out, true)?;
        }
        Ok(Bytes::from(self.out))
    }

    fn push(&mut self, text: &str) -> Result<(), Unmappable> {
        let text = if self.started {
            text
        } else {
            let rest = text.trim_start();
            self.started = !rest.is_empty();
            rest
        };
        match &mut self.encoder {
            None => {
                self.out.extend_from_slice(text.as_bytes());
                Ok(())
            }
            Some(encoder) => encode(encoder, text, &mut self.out, false),
        }
    }
}

fn encode(
    encoder: &mut Encoder,
    mut text: &str,
    out: &mut Vec<u8>,
    last: bool,
) -> Result<(), Unmappable> {
    loop {
        let room = encoder
            .max_buffer_length_from_utf8_without_replacement(text.len())
            .unwrap_or(text.len() * 4 + 16);
        out.reserve(room);
        let (result, read) = encoder.encode_from_utf8_to_vec_without_replacement(text, out, last);
        text = &text[read..];
        match result {
            EncoderResult::InputEmpty => return Ok(()),
            EncoderResult::OutputFull => {}
            EncoderResult::Unmappable(_) => return Err(Unmappable),
        }
    }
}

impl io::Write for BodyWriter {
    /// The template engine writes whole pieces of text (`&str`), so each
    /// `buf` is valid UTF-8: once past the leading white space, UTF-8 text
    /// and ASCII pieces go into the buffer as they are, and only the rest is
    /// checked and encoded.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.started && (self.encoder.is_none() || (self.ascii_as_is && buf.is_ascii())) {
            self.out.extend_from_slice(buf);
            return Ok(buf.len());
        }
        let text = std::str::from_utf8(buf).map_err(io::Error::other)?;
        self.push(text).map_err(|Unmappable| {
            self.unmappable = true;
            io::Error::other("a character the encoding cannot write")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn charset(label: &str) -> Charset {
        let encoding = Encoding::for_label(label.as_bytes()).unwrap_or(encoding_rs::UTF_8);
        Charset::new(label, encoding)
    }

    #[test]
    fn an_xml_body_starts_with_its_declaration_and_loses_its_leading_space() {
        let mut w = BodyWriter::xml(&charset("UTF-8"), 16).expect("declaration");
        for piece in ["\n  ", " ", "<A>", " 中 ", "</A>\n"] {
            w.write_all(piece.as_bytes()).expect("written");
        }
        let body = w.finish().expect("finished");
        assert_eq!(
            &body[..],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<A> 中 </A>\n".as_bytes()
        );
    }

    #[test]
    fn gb18030_is_encoded_into_the_buffer_piece_by_piece() {
        let text = "<A>中国工商银行天水麦积支行</A>";
        let mut w = BodyWriter::xml(&charset("GB18030"), 0).expect("declaration");
        for c in text.chars() {
            w.write_all(c.encode_utf8(&mut [0; 4]).as_bytes())
                .expect("written");
        }
        let body = w.finish().expect("finished");
        let whole = format!("<?xml version=\"1.0\" encoding=\"GB18030\"?>\n{text}");
        assert_eq!(&body[..], &encoding_rs::GB18030.encode(&whole).0[..]);
    }

    #[test]
    fn a_stateful_encoding_gets_its_ascii_through_the_encoder() {
        // ISO-2022-JP switches back to ASCII with an escape: ASCII pieces
        // after Japanese text cannot be copied as they are.
        let pieces = ["<A>", "日本", "</A>", "<B>", "語", "</B>"];
        let mut w = BodyWriter::xml(&charset("ISO-2022-JP"), 0).expect("declaration");
        for piece in pieces {
            w.write_all(piece.as_bytes()).expect("written");
        }
        let body = w.finish().expect("finished");
        let whole = format!(
            "<?xml version=\"1.0\" encoding=\"ISO-2022-JP\"?>\n{}",
            pieces.concat()
        );
        assert_eq!(&body[..], &encoding_rs::ISO_2022_JP.encode(&whole).0[..]);
    }

    #[test]
    fn a_character_the_encoding_lacks_is_refused_not_replaced() {
        let mut w = BodyWriter::xml(&charset("GBK"), 0).expect("declaration");
        assert!(w.write_all("<A>😀</A>".as_bytes()).is_err());
        assert!(w.was_unmappable());
    }
}
