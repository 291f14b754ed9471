// Transitional: src/storage/keys.ts defines what stored keys mean. This re-export only keeps
// src/storage/certificates.ts compiling until branch i14-issuance moves that file to
// src/issuance/ (and imports keys.ts); delete it then.
export {
  /** See keys.ts: a storage-safe id for a CA, from its directory URL. */
  caIdFromDirectory,
  /** See keys.ts: the storage key of everything certgate stores. */
  keys,
} from './keys.ts';
