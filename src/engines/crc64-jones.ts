// CRC-64 as Redis computes it over an RDB file: the Jones polynomial, reflected, initial value 0, no
// final XOR (check value: "123456789" → 0xe9c6d914c4b8d9ca). JavaScript has no 64-bit integers that
// are fast, so the register is kept as two 32-bit halves.

// 0x95ac9329ac4bc9b5, the reflected Jones polynomial, in halves.
const POLY_HI = 0x95ac9329;
const POLY_LO = 0xac4bc9b5;

const TABLE_HI = new Uint32Array(256);
const TABLE_LO = new Uint32Array(256);
for (let byte = 0; byte < 256; byte++) {
  let hi = 0;
  let lo = byte;
  for (let bit = 0; bit < 8; bit++) {
    const carry = lo & 1;
    lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
    hi >>>= 1;
    if (carry) {
      hi = (hi ^ POLY_HI) >>> 0;
      lo = (lo ^ POLY_LO) >>> 0;
    }
  }
  TABLE_HI[byte] = hi;
  TABLE_LO[byte] = lo;
}

// A running CRC: feed bytes in order, read the value at any point (as a bigint, for comparing).
export type Crc64 = { update(bytes: Uint8Array): void; value(): bigint };

// Starts a CRC-64/Jones (Redis) at `from` (0n for a new stream).
export function crc64Jones(from = 0n): Crc64 {
  let hi = Number(from >> 32n) >>> 0;
  let lo = Number(from & 0xffffffffn) >>> 0;
  return {
    update(bytes) {
      for (let i = 0; i < bytes.length; i++) {
        const index = (lo ^ (bytes[i] ?? 0)) & 0xff;
        lo = (((lo >>> 8) | ((hi & 0xff) << 24)) ^ (TABLE_LO[index] ?? 0)) >>> 0;
        hi = ((hi >>> 8) ^ (TABLE_HI[index] ?? 0)) >>> 0;
      }
    },
    value: () => (BigInt(hi) << 32n) | BigInt(lo),
  };
}
