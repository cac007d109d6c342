//! A bit reader for codec headers (H264 SPS, VP9 uncompressed header, AV1
//! sequence header).

/// Reads bits MSB first without copying; for H264 RBSPs, skipping emulation
/// prevention bytes (a 0x03 after two zero bytes, H.264 section 7.4.1).
#[derive(Debug)]
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: u8,
    rbsp: bool,
}

impl<'a> BitReader<'a> {
    /// A reader of plain bits (VP9, AV1 headers).
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
            rbsp: false,
        }
    }

    /// A reader of an H264 NAL unit's RBSP.
    pub(super) fn rbsp(data: &'a [u8]) -> Self {
        Self {
            rbsp: true,
            ..Self::new(data)
        }
    }

    /// One bit.
    pub(super) fn bit(&mut self) -> Option<u32> {
        if self.bit == 0 {
            // Entering a new byte: skip it if it is an emulation prevention byte.
            let b = *self.data.get(self.byte)?;
            if self.rbsp && self.zeros >= 2 && b == 0x03 {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.data.get(self.byte)?;
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        }
        let b = *self.data.get(self.byte)?;
        let v = (b >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(u32::from(v))
    }

    /// `n` bits (at most 32), MSB first.
    pub(super) fn bits(&mut self, n: u8) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    /// ue(v): Exp-Golomb, at most 31 leading zeros.
    pub(super) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0u8;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// se(v): signed Exp-Golomb.
    pub(super) fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_and_emulation_prevention() {
        // 1 | 010 | 011 | 00100 | 00101: ue 0, 1, 2, 3, se(4) = -2.
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0010, 0b1000_0000]);
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(2));
        assert_eq!(r.ue(), Some(3));
        assert_eq!(r.se(), Some(-2));
        // 00 00 03 01: the 03 is skipped in an RBSP, read in plain bits.
        assert_eq!(BitReader::rbsp(&[0, 0, 3, 1]).bits(24), Some(1));
        assert_eq!(BitReader::new(&[0, 0, 3, 1]).bits(24), Some(3));
        // Past the end, and too many leading zeros.
        assert_eq!(BitReader::new(&[0xFF]).bits(9), None);
        assert_eq!(BitReader::new(&[0, 0, 0, 0, 0x80]).ue(), None);
    }
}
