//! Decoding a fuzzer's bytes into small shapes, parameters and data.

/// A cursor over the input; reads past the end give zeros, so every input
/// decodes to something.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// Starts at the first byte.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.byte() as usize % (hi - lo + 1)
    }

    /// A flag.
    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// One of `options`.
    pub fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[self.byte() as usize % options.len()]
    }

    /// A data value: mostly small finite numbers, with NaN and ±∞ when
    /// `special` (bytes 253, 254, 255).
    pub fn value(&mut self, special: bool) -> f64 {
        match self.byte() {
            255 if special => f64::NAN,
            254 if special => f64::INFINITY,
            253 if special => f64::NEG_INFINITY,
            b => (b as f64 - 127.0) / 16.0,
        }
    }

    /// `len` data values.
    pub fn values(&mut self, len: usize, special: bool) -> Vec<f64> {
        (0..len).map(|_| self.value(special)).collect()
    }
}
