//! `form_tap` owns what hoard reads of a browser POST form on its way to s3s, which
//! parses the form but drops these: the `filename` of the part named `file` (S3
//! puts it in place of `${filename}` in the form's key) and the `tagging` field (the
//! object's tags as an XML tag set). The tap passes every byte through unchanged and
//! keeps at most `WINDOW` bytes of its own to find them across frame boundaries; it
//! stops looking at the file part (S3 ignores fields after it).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

/// What a form key names the uploaded file's name by.
pub const FILENAME_VARIABLE: &str = "${filename}";

/// The bytes the tap keeps between frames to find a field split across them (a
/// tag set of S3's ten largest tags fits).
const WINDOW: usize = 16 * 1024;

/// The file name and tag set of a POST form, once the tap has seen them.
#[derive(Debug, Clone, Default)]
pub struct FormFields {
    name: Arc<OnceLock<String>>,
    tagging: Arc<OnceLock<String>>,
}

impl FormFields {
    pub fn get(&self) -> Option<&str> {
        self.name.get().map(String::as_str)
    }

    /// The form's `tagging` field, as sent (an XML `Tagging` document).
    pub fn tagging(&self) -> Option<&str> {
        self.tagging.get().map(String::as_str)
    }

    /// `key` with `${filename}` replaced by the file's name (as S3 does), if it
    /// names the variable and the name is known.
    pub fn substitute(&self, key: &str) -> Option<String> {
        let name = self.get()?;
        key.contains(FILENAME_VARIABLE)
            .then(|| key.replace(FILENAME_VARIABLE, name))
    }
}

#[derive(serde::Deserialize)]
struct Tagging {
    #[serde(rename = "TagSet")]
    tag_set: TagSet,
}

#[derive(serde::Deserialize)]
struct TagSet {
    #[serde(rename = "Tag", default)]
    tags: Vec<Tag>,
}

#[derive(serde::Deserialize)]
struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

/// The (key, value) pairs of a `tagging` field's XML tag set; `None`: not a tag set.
pub fn tags_of(xml: &str) -> Option<Vec<(String, String)>> {
    let t: Tagging = quick_xml::de::from_str(xml).ok()?;
    Some(
        t.tag_set
            .tags
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect(),
    )
}

/// A request body that records the form's file name and tag set as they pass.
pub struct FormTap<B> {
    inner: B,
    found: FormFields,
    seen: Vec<u8>,
}

impl<B> FormTap<B> {
    pub fn new(inner: B, found: FormFields) -> Self {
        FormTap {
            inner,
            found,
            seen: Vec::new(),
        }
    }

    fn look(&mut self, data: &[u8]) {
        if self.found.get().is_some() {
            return;
        }
        self.seen.extend_from_slice(data);
        if self.found.tagging().is_none()
            && let Some(tagging) = tagging_in(&self.seen)
        {
            let _ = self.found.tagging.set(tagging);
        }
        if let Some(name) = file_name_in(&self.seen) {
            let _ = self.found.name.set(name);
            self.seen = Vec::new();
            return;
        }
        if self.seen.len() > WINDOW {
            let cut = self.seen.len() - WINDOW;
            self.seen.drain(..cut);
        }
    }
}

/// The `filename` of the form part named `file`, if `bytes` hold its header whole.
fn file_name_in(bytes: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"name=\"file\"; filename=\"";
    let lower = bytes.to_ascii_lowercase();
    let start = lower.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let len = bytes[start..].iter().position(|b| *b == b'"')?;
    String::from_utf8(bytes[start..start + len].to_vec()).ok()
}

/// The value of the form field named `tagging`, if `bytes` hold it whole.
fn tagging_in(bytes: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"name=\"tagging\"";
    let lower = bytes.to_ascii_lowercase();
    let at = lower.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let start = at + bytes[at..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let len = bytes[start..].windows(4).position(|w| w == b"\r\n--")?;
    String::from_utf8(bytes[start..start + len].to_vec()).ok()
}

impl<B> Body for FormTap<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let data = data.clone();
            self.look(&data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_is_found_across_frames_and_substituted() {
        let form = b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nup/${filename}\r\n--b\r\nContent-Disposition: form-data; name=\"tagging\"\r\n\r\n<Tagging><TagSet></TagSet></Tagging>\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report 2026.pdf\"\r\n\r\nDATA";
        for split in [1, 40, 95, 110, 150, 190, form.len() - 1] {
            let found = FormFields::default();
            let mut tap = FormTap::new((), found.clone());
            tap.look(&form[..split]);
            tap.look(&form[split..]);
            assert_eq!(found.get(), Some("report 2026.pdf"), "split at {split}");
            assert_eq!(
                found.tagging(),
                Some("<Tagging><TagSet></TagSet></Tagging>"),
                "split at {split}"
            );
            assert_eq!(
                found.substitute("up/${filename}").as_deref(),
                Some("up/report 2026.pdf")
            );
            assert_eq!(found.substitute("up/fixed"), None);
        }
        let tags = tags_of(
            "<Tagging><TagSet><Tag><Key>dept</Key><Value>legal</Value></Tag><Tag><Key>x</Key><Value></Value></Tag></TagSet></Tagging>",
        );
        assert_eq!(
            tags.unwrap(),
            [("dept".into(), "legal".into()), ("x".into(), String::new())]
        );
        assert_eq!(tags_of("<Tags>"), None);
        let found = FormFields::default();
        let mut tap = FormTap::new((), found.clone());
        tap.look(b"Content-Disposition: form-data; name=\"key\"\r\n\r\nx");
        assert_eq!(found.get(), None, "no file part, no name");
    }
}
