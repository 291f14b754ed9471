// @peculiar/x509 depends on tsyringe, which refuses to load without a Reflect metadata
// polyfill. Import this module before '@peculiar/x509' (ESM evaluates imports in order).
import 'reflect-metadata';
