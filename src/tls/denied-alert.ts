// Refusing a handshake with a TLS alert from the SNI callback (`tls.denied: alert`).
//   1. Node has no way to make OpenSSL send an alert from SNICallback: an error passed to its
//      callback destroys the socket with no alert at all (the client reads an EOF), and a
//      context without a certificate fails the same way. So we write the alert record ourselves.
//   2. The SNI callback runs while the server processes the ClientHello, before it has sent a
//      single byte: no keys exist yet, and in TLS 1.2 and 1.3 alike an alert at this point is a
//      plaintext record (RFC 8446 §5, §6). It goes straight onto the TCP socket under the
//      TLSSocket (`_parent`, the raw socket node:tls wrapped; see net/client-address.ts).
//   3. Once the record is written the socket is destroyed; the pending SNI callback is never
//      answered (the TLS session is freed with the socket). node:tls still reports the closed
//      socket as a `tlsClientError` (ECONNRESET, "socket hang up"), logged at debug only.
//   Without a raw socket to write to, the socket is just destroyed (the client sees an EOF).
//   4. Before node:tls has seen the connection at all (tls/early-refusal.ts), the same record goes
//      onto the accepted socket itself (alertRawSocket).
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** TLS alert description `unrecognized_name` (RFC 6066 §3). */
export const UNRECOGNIZED_NAME = 112;

// Record: content type alert (21), legacy version TLS 1.2 (3,3), length 2; alert: fatal (2), 112.
const ALERT_RECORD = Buffer.from([21, 3, 3, 0, 2, 2, UNRECOGNIZED_NAME]);

interface RawSocket {
  writable?: boolean;
  write(data: Uint8Array, cb: (err?: Error | null) => void): boolean;
}

/**
 * Answers a handshake whose SNI callback is running with a fatal unrecognized_name alert and
 * closes the connection. Call it from SNICallback instead of its callback (step 3 above); never
 * throws.
 */
export function refuseWithAlert(socket: TLSSocket): void {
  writeAlert((socket as unknown as { _parent?: RawSocket | null })._parent, socket);
}

/**
 * Step 4: answers a connection whose ClientHello node:tls has not seen with the same alert, on
 * the accepted socket, and destroys it. Never throws.
 */
export function alertRawSocket(socket: Socket): void {
  writeAlert(socket, socket);
}

function writeAlert(raw: RawSocket | null | undefined, socket: { destroy(): void }): void {
  const close = (): void => {
    socket.destroy();
  };
  if (!raw || raw.writable === false || typeof raw.write !== 'function') {
    close();
    return;
  }
  try {
    raw.write(ALERT_RECORD, close);
  } catch {
    close();
  }
}
