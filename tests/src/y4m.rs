//! A fake camera file for Chromium (`--use-file-for-fake-video-capture`):
//! uncompressed YUV4MPEG2 (4:2:0) whose content costs an encoder a real
//! bitrate. Chromium's built-in fake camera draws a mostly flat picture, and
//! its 720p VP8 layer measured 450-850 kbit/s; a test about a 1 Mbit/s link
//! needs a top layer that does not fit it.
//!
//! The picture is a pseudo-random texture (high entropy in every 8x8 block)
//! that pans round a circle, plus fresh noise of a few levels on every frame,
//! so motion compensation cannot predict it away. Chromium loops the file;
//! the circle closes at the last frame, so the loop has no cut (a cut once a
//! loop makes the encoder spend one frame far larger than the others).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Radius of the pan's circle, pixels (at 30 frames a loop, about 4 pixels
/// a frame).
const PAN_RADIUS: usize = 20;

/// xorshift32: deterministic, fast, good enough for texture.
fn next(state: &mut u32) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x
}

/// Writes `frames` frames of `width` x `height` (both even) at `fps` to
/// `path`. About `width * height * 1.5 * frames` bytes: 1280x720 for 30 frames
/// is 41 MB.
pub fn write_busy_y4m(
    path: &Path,
    width: usize,
    height: usize,
    fps: u32,
    frames: usize,
) -> io::Result<()> {
    assert!(
        width.is_multiple_of(2) && height.is_multiple_of(2),
        "4:2:0 needs even sizes"
    );
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    writeln!(
        out,
        "YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg"
    )?;
    // The texture is larger than the frame by the circle's diameter.
    let (tw, th) = (width + 2 * PAN_RADIUS, height + 2 * PAN_RADIUS);
    let mut state = 0x9e37_79b9u32;
    let texture: Vec<u8> = (0..tw * th)
        .map(|_| (next(&mut state) >> 24) as u8)
        .collect();
    let (cw, ch) = (width / 2, height / 2);
    let mut luma = vec![0u8; width * height];
    let mut chroma = vec![0u8; cw * ch];
    for f in 0..frames {
        out.write_all(b"FRAME\n")?;
        let angle = std::f64::consts::TAU * f as f64 / frames as f64;
        let r = PAN_RADIUS as f64;
        let dx = (r + r * angle.cos()).round() as usize;
        let dy = (r + r * angle.sin()).round() as usize;
        for (y, row) in luma.chunks_exact_mut(width).enumerate() {
            let src = &texture[(y + dy) * tw + dx..][..width];
            for (px, &t) in row.iter_mut().zip(src) {
                let noise = (next(&mut state) >> 28) as u8; // 0..16
                *px = (t / 2 + 56).wrapping_add(noise);
            }
        }
        out.write_all(&luma)?;
        for plane in 0..2 {
            for (y, row) in chroma.chunks_exact_mut(cw).enumerate() {
                let src = &texture[(2 * y + dy) * tw + dx + plane..][..2 * cw];
                for (x, px) in row.iter_mut().enumerate() {
                    *px = 96 + src[2 * x] / 4;
                }
            }
            out.write_all(&chroma)?;
        }
    }
    out.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_header_and_frames_of_the_planar_4_2_0_size() {
        let dir = std::env::temp_dir().join(format!("y4m-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cam.y4m");
        write_busy_y4m(&path, 64, 36, 30, 3).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header = b"YUV4MPEG2 W64 H36 F30:1 Ip A1:1 C420jpeg\n";
        assert!(bytes.starts_with(header));
        let frame = b"FRAME\n".len() + 64 * 36 * 3 / 2;
        assert_eq!(bytes.len(), header.len() + 3 * frame);
        // Consecutive frames differ (the picture moves).
        let body = &bytes[header.len()..];
        assert_ne!(body[..frame], body[frame..2 * frame]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
