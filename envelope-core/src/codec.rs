//! The byte-level codec: a cursor that never reads past its slice and
//! big-endian writers. Every length read here is checked against a typed
//! maximum before anything is allocated (docs/format.md, MUST 2.3).

use crate::error::FormatError;

/// A cursor over a borrowed slice; every read fails cleanly on short input.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Takes exactly `n` bytes, or fails naming `field`.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).ok_or(FormatError::Truncated(field))?;
        let bytes = self.buf.get(self.pos..end).ok_or(FormatError::Truncated(field))?;
        self.pos = end;
        Ok(bytes)
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A `u16` length prefix and its bytes, the length checked against `max`
    /// before the bytes are touched.
    pub(crate) fn vec16(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], FormatError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(FormatError::TooLong { field, len, max });
        }
        self.take(len, field)
    }
}

/// Appends a `u16` length prefix and `bytes`. Callers have already checked
/// `bytes` against the field's maximum, which is below `u16::MAX`.
pub(crate) fn put_vec16(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every type that reaches here checked its length at construction.
    let len = u16::try_from(bytes.len()).expect("field maxima are below u16::MAX");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_fail_without_panicking() {
        let mut r = Reader::new(&[0, 5, 1, 2]);
        assert_eq!(r.vec16("field", 10), Err(FormatError::Truncated("field")));
        let mut r = Reader::new(&[0, 11]);
        assert_eq!(r.vec16("field", 10), Err(FormatError::TooLong { field: "field", len: 11, max: 10 }));
        let mut r = Reader::new(&[1]);
        assert_eq!(r.u32("n"), Err(FormatError::Truncated("n")));
        assert_eq!(r.take(usize::MAX, "x"), Err(FormatError::Truncated("x")));
    }
}
