// A CommonJS package loaded with import() is, under Node, a namespace with its exports both named
// and as `default`; in the bundle `npm run build` makes (esbuild, split into chunks) the namespace
// has `default` only. Taking `default` when there is one reads the exports the same way in both.

/** The exports of a CommonJS package from its dynamic-import namespace. */
export function commonJsExports<T extends object>(namespace: T): T {
  const exports = (namespace as { default?: unknown }).default;
  return typeof exports === 'object' && exports !== null ? (exports as T) : namespace;
}
