// The completeness check of a Redis RDB stream: `REDIS` and 4 version digits first; at the end the
// EOF opcode 0xFF and the CRC-64 of everything before it (0 when the server has checksums off).
// redis-cli --rdb - cannot cut the 40-byte `$EOF:` mark of a diskless sync off its output, so the
// opcode sits either 9 or 49 bytes before the end.
import { crc64Jones } from './crc64-jones.ts';
import { printable, type CompletenessCheck } from './marks.ts';

const MAGIC = /^REDIS\d{4}$/;
const MAGIC_BYTES = 9;
const EOF_OPCODE = 0xff;
const CRC_BYTES = 8;
// The `$EOF:<40 random characters>` mark a diskless transfer ends with.
const DISKLESS_MARK_BYTES = 40;
// Bytes held back from the running CRC until the end, when it is known where the opcode is.
const HELD_BYTES = 1 + CRC_BYTES + DISKLESS_MARK_BYTES;
// RDB versions before 5 carry no checksum.
const FIRST_VERSION_WITH_CRC = 5;

// A fresh check for one RDB stream (it reads every byte: the CRC covers the whole file).
export function rdbCheck(): CompletenessCheck {
  const crc = crc64Jones();
  const head = Buffer.alloc(MAGIC_BYTES);
  let headLength = 0;
  let held = Buffer.alloc(0);
  return {
    scope: 'stream',
    write(chunk) {
      if (headLength < MAGIC_BYTES) headLength += chunk.copy(head, headLength, 0, Math.min(chunk.length, MAGIC_BYTES - headLength));
      const all = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
      if (all.length <= HELD_BYTES) {
        held = Buffer.from(all);
        return;
      }
      crc.update(all.subarray(0, all.length - HELD_BYTES));
      held = Buffer.from(all.subarray(all.length - HELD_BYTES));
    },
    verdict() {
      const magic = head.subarray(0, headLength);
      if (!MAGIC.test(magic.toString('latin1'))) return `the output is not an RDB file: it starts with ${printable(magic)}, not REDIS and a version`;
      const version = Number(magic.subarray(5).toString('latin1'));
      const ends = [held.length - 1 - CRC_BYTES, held.length - HELD_BYTES].filter((at) => at >= 0 && held[at] === EOF_OPCODE);
      if (version < FIRST_VERSION_WITH_CRC) {
        return held.at(-1) === EOF_OPCODE || held.at(-1 - DISKLESS_MARK_BYTES) === EOF_OPCODE ? undefined : 'the RDB stream does not end with its EOF opcode: it was cut off';
      }
      if (ends.length === 0) return 'the RDB stream does not end with its EOF opcode and checksum: it was cut off';
      for (const at of ends) {
        const stored = held.readBigUInt64LE(at + 1);
        if (stored === 0n) return undefined;
        const total = crc64Jones(crc.value());
        total.update(held.subarray(0, at + 1));
        if (total.value() === stored) return undefined;
      }
      return 'the RDB checksum does not match its content: the stream is damaged';
    },
  };
}
