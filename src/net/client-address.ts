// The client's address for a connection: the one a trusted balancer's PROXY header gave
// (src/net/proxy-protocol-listener.ts records it), else the socket's peer. Every place that keys,
// logs or forwards a client address asks here, whichever socket it holds:
//   - the raw TCP socket the listener accepted (the record is keyed by it)
//   - the TLSSocket node:tls wraps it in (handshake callbacks, https requests): its `_parent`
//     is the raw socket (pinned by test/net/proxy-protocol-listener.test.ts)
//   - an HTTP/2 compatibility request's `socket`, a proxy that reads through to that TLSSocket
import { plainAddress } from './cidr.ts';

const given = new WeakMap<object, string>();

/** A socket as this module reads it: any of the kinds in the header above. */
export interface AddressedSocket {
  readonly remoteAddress?: string | undefined;
}

/** Records the client address a PROXY header gave for the raw socket `socket`. */
export function setProxiedAddress(socket: object, address: string): void {
  given.set(socket, plainAddress(address));
}

/**
 * The client's address: the PROXY-given one when the connection had one, else the peer address;
 * IPv4-mapped IPv6 shown as plain IPv4. undefined only for a socket with no peer (destroyed).
 */
export function clientAddress(socket: AddressedSocket | null | undefined): string | undefined {
  if (socket == null) return undefined;
  const direct = given.get(socket);
  if (direct !== undefined) return direct;
  const parent = (socket as { _parent?: unknown })._parent;
  if (parent !== null && typeof parent === 'object') {
    const viaParent = given.get(parent);
    if (viaParent !== undefined) return viaParent;
  }
  const peer = socket.remoteAddress;
  return peer === undefined ? undefined : plainAddress(peer);
}
