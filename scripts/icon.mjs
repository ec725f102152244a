// Draws the extension icon (images/icon.png, 128×128) and the task icon (32×32): three stacked
// image layers on a blue tile, the lowest one green for "restored from the cache".
// Run: node scripts/icon.mjs. Anti-aliased by 4×4 supersampling; PNG encoded with zlib.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

const root = path.resolve(import.meta.dirname, '..');

function inRoundedRect(x, y, left, top, right, bottom, r) {
  if (x < left || x > right || y < top || y > bottom) return false;
  const cx = Math.min(Math.max(x, left + r), right - r);
  const cy = Math.min(Math.max(y, top + r), bottom - r);
  return (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
}

/** The colour at (x, y) in a 1×1 square, as [r, g, b, a]. */
function shade(x, y) {
  const layers = [
    { top: 0.2, color: [255, 255, 255] },
    { top: 0.42, color: [255, 255, 255] },
    { top: 0.64, color: [88, 214, 141] },
  ];
  for (const [i, l] of layers.entries()) {
    const inset = 0.2 - i * 0.03;
    if (inRoundedRect(x, y, inset, l.top, 1 - inset, l.top + 0.14, 0.05)) return [...l.color, 255];
  }
  if (inRoundedRect(x, y, 0.02, 0.02, 0.98, 0.98, 0.18)) {
    const t = y;
    return [Math.round(20 + 16 * t), Math.round(120 - 30 * t), Math.round(220 - 40 * t), 255];
  }
  return [0, 0, 0, 0];
}

function render(size, samples = 4) {
  const rows = [];
  for (let py = 0; py < size; py++) {
    const row = Buffer.alloc(1 + size * 4);
    for (let px = 0; px < size; px++) {
      const acc = [0, 0, 0, 0];
      for (let sy = 0; sy < samples; sy++) {
        for (let sx = 0; sx < samples; sx++) {
          const c = shade((px + (sx + 0.5) / samples) / size, (py + (sy + 0.5) / samples) / size);
          acc[0] += c[0] * c[3];
          acc[1] += c[1] * c[3];
          acc[2] += c[2] * c[3];
          acc[3] += c[3];
        }
      }
      const alpha = acc[3] / (samples * samples);
      const out = acc[3] === 0 ? [0, 0, 0, 0] : [acc[0] / acc[3], acc[1] / acc[3], acc[2] / acc[3], alpha];
      out.forEach((v, i) => (row[1 + px * 4 + i] = Math.round(v)));
    }
    rows.push(row);
  }
  return png(size, size, Buffer.concat(rows));
}

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

function png(width, height, raw) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

fs.mkdirSync(path.join(root, 'images'), { recursive: true });
fs.writeFileSync(path.join(root, 'images', 'icon.png'), render(128));
fs.writeFileSync(path.join(root, 'tasks', 'DockerBuildxCacheV1', 'icon.png'), render(32));
console.log('wrote images/icon.png (128×128) and tasks/DockerBuildxCacheV1/icon.png (32×32)');
