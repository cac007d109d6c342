// A small PNG reader for Chromium's screenshots (8-bit RGB or RGBA, not
// interlaced), enough to check that a tile's pixels are not blank.

import { inflateSync } from 'node:zlib';

/** Decodes `buf` into `{width, height, channels, pixels}` (pixels: Uint8Array). */
export function decodePng(buf) {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!sig.every((b, i) => buf[i] === b)) throw new Error('not a PNG');
  let off = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat = [];
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    off += 12 + len;
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8];
      const color = data[9];
      const interlace = data[12];
      if (depth !== 8 || interlace !== 0 || (color !== 2 && color !== 6)) {
        throw new Error(`unsupported PNG: depth ${depth}, color ${color}, interlace ${interlace}`);
      }
      channels = color === 6 ? 4 : 3;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = pixels.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : null;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[x - channels] : 0;
      const b = prev ? prev[x] : 0;
      const c = prev && x >= channels ? prev[x - channels] : 0;
      let v = line[x];
      switch (filter) {
        case 0: break;
        case 1: v += a; break;
        case 2: v += b; break;
        case 3: v += (a + b) >> 1; break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new Error(`bad PNG filter ${filter}`);
      }
      out[x] = v & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

/**
 * Luma figures of an image: mean, standard deviation, and the share of
 * pixels brighter than 24 (not black) — a blank or black tile has a tiny
 * deviation or almost no bright pixels.
 */
export function lumaStats(img) {
  const { width, height, channels, pixels } = img;
  let sum = 0;
  let sq = 0;
  let bright = 0;
  const n = width * height;
  for (let i = 0; i < n; i++) {
    const o = i * channels;
    const l = 0.299 * pixels[o] + 0.587 * pixels[o + 1] + 0.114 * pixels[o + 2];
    sum += l;
    sq += l * l;
    if (l > 24) bright++;
  }
  const mean = sum / n;
  return {
    width,
    height,
    mean: Math.round(mean * 10) / 10,
    stddev: Math.round(Math.sqrt(Math.max(0, sq / n - mean * mean)) * 10) / 10,
    brightShare: Math.round((1000 * bright) / n) / 1000,
  };
}
