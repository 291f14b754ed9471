// A name hashed to a number in [0, 1): spreads per-name times (renewal jitter, a time inside an
// ARI window) the same way on every instance without any coordination.
import { createHash } from 'node:crypto';

/** A stable number in [0, 1) for a name: the same on every instance and every run. `salt` gives independent spreads. */
export function unitHash(name: string, salt = ''): number {
  const digest = createHash('sha256').update(salt).update(name).digest();
  return digest.readUInt32BE(0) / 0x1_0000_0000;
}
