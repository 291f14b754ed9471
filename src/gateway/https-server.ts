// The HTTPS listener's server: HTTP/2 and HTTP/1.1 on one port, chosen by ALPN (`tls.alpn`).
//   1. ALPN: the handshake path's ALPNCallback (src/tls/handshake.ts) answers, from `tls.alpn`
//      in its order, or acme-tls/1 for a CA validating tls-alpn-01; with a callback set, Node's
//      http2 server does not impose its own protocol list
//   2. acme-tls/1: the connection ends after the handshake; no HTTP/2 session, no byte sent
//   3. h2: the session limits and rapid-reset guard of src/proxy/h2.ts, requests into the proxy
//   4. http/1.1 (or no ALPN at all): Node's HTTP/1.1 server (allowHTTP1); upgrades (WebSocket)
//      go to the proxy's tunnel, as only HTTP/1.1 has them
// Closing is the drain's (drain.ts): it tracks connections and HTTP/2 sessions itself.
import { createSecureServer, type Http2SecureServer, type SecureServerOptions, type ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../util/log.ts';
import { clientAddress } from '../net/client-address.ts';
import type { ReverseProxy } from '../proxy/proxy.ts';
import { guardH2Session, h2GuardContext, h2Request, h2ServerOptions } from '../proxy/h2.ts';
import { ACME_TLS_ALPN, type HandshakeCallbacks } from '../tls/handshake.ts';

/** The HTTPS listener's server: HTTP/2 and HTTP/1.1 (allowHTTP1). */
export type HttpsListenerServer = Http2SecureServer;

/**
 * Builds the server of the header. `tlsOptions` are the certificate, key and protocol settings
 * (no ALPNProtocols: `callbacks.ALPNCallback` picks the protocol, so it must know `tls.alpn`).
 */
export function createHttpsListenerServer(tlsOptions: SecureServerOptions, callbacks: HandshakeCallbacks, proxy: ReverseProxy, logger: Logger): HttpsListenerServer {
  const handle = h2Request((req, res) => proxy.handleRequest(req, res));
  const server = createSecureServer({ ...tlsOptions, ...h2ServerOptions(), allowHTTP1: true, ...callbacks }, handle);
  endAcmeTlsConnections(server);
  const guard = h2GuardContext(logger.child({ component: 'https' }));
  server.on('session', (session: ServerHttp2Session) => guardH2Session(guard, session));
  server.on('upgrade', (req, socket, head) => proxy.handleUpgrade(req, socket, head));
  server.on('tlsClientError', (err, socket) => {
    // One per refused handshake of a flood: build nothing unless it is logged.
    if (!logger.isLevelEnabled('debug')) return;
    logger.debug({ step: 'tls-handshake', sni: (socket as TLSSocket).servername || undefined, remote: clientAddress(socket), err: err.message }, 'TLS handshake failed');
  });
  return server;
}

/**
 * Step 2: Node's http2 server starts an HTTP/2 session on any ALPN protocol but http/1.1 (its
 * SETTINGS frame would be the first bytes a validating CA reads); its 'secureConnection'
 * listener is wrapped so an acme-tls/1 connection never reaches it.
 */
function endAcmeTlsConnections(server: Http2SecureServer): void {
  const inner = server.listeners('secureConnection') as Array<(socket: TLSSocket) => void>;
  server.removeAllListeners('secureConnection');
  server.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === ACME_TLS_ALPN) {
      socket.end();
      return;
    }
    for (const listener of inner) listener.call(server, socket);
  });
}
