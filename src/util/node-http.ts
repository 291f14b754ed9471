// node:http through its CommonJS exports object. An ES `import` of node:http reads every one of
// its exports, and the lazy WebSocket/MessageEvent/CloseEvent getters among them load Node's
// bundled undici: ~50 ms of CPU at each process's start, for classes certgate never uses
// (nodejs/node#59686). Import the values from here; types can still come from 'node:http'.
import type * as NodeHttp from 'node:http';

/** node:http's values, without loading its lazy undici getters (see the header). */
export const { createServer, request, STATUS_CODES } = process.getBuiltinModule('node:http') as typeof NodeHttp;
