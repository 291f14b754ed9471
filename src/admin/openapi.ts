// The admin API's OpenAPI 3.1 document, served at /openapi.json. The PUT body and certificate
// status schemas are generated from the zod schemas the server validates with or types its
// answers by, so the two cannot drift apart.
import { z } from 'zod';
import { bindingInputSchema } from './bindings.ts';
import { certificateStatusSchema, noCertificateSchema } from './certificate-status.ts';
import { DELIVERY_STATUSES } from '../webhooks/deliveries.ts';
import { hostnameSchema, HOSTNAME_STATUSES } from './hostname-status.ts';

const json = (schema: object, description: string) => ({ description, content: { 'application/json': { schema } } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const error = (description: string) => json(ref('Error'), description);
const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string' }, description: 'Domain name (IDN allowed, stored as punycode; an xn-- label must be valid punycode that round-trips).' };
/** /v1/certificates/{name} also takes a managed entry's wildcard, and any of an entry's names means that entry. */
const certificateNameParam = {
  ...nameParam,
  description: `${nameParam.description} A managed certificate (\`certificates\`) answers for any name of its entry, a \`*.\` wildcard included.`,
};
const auth = [{ bearer: [] }];
const deliveryPage = {
  type: 'object',
  required: ['items', 'nextCursor'],
  properties: {
    nextCursor: { type: ['string', 'null'] },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'webhookId', 'url', 'type', 'domain', 'status', 'attempts', 'createdAt', 'updatedAt'],
        properties: {
          ...{ id: { type: 'string' }, webhookId: { type: 'string', description: 'The webhook-id header, the same on every attempt' }, endpoint: { type: 'string' }, url: { type: 'string' } },
          ...{ type: { type: 'string' }, domain: { type: 'string' }, status: { type: 'string', enum: [...DELIVERY_STATUSES] }, attempts: { type: 'integer' } },
          ...{ createdAt: { type: 'string', format: 'date-time' }, updatedAt: { type: 'string', format: 'date-time' }, nextAttemptAt: { type: 'string', format: 'date-time' }, deliveredAt: { type: 'string', format: 'date-time' } },
          lastError: { type: 'object', properties: { at: { type: 'string', format: 'date-time' }, error: { type: 'string' }, status: { type: 'integer' } } },
        },
      },
    },
  },
};

/** The admin API's OpenAPI 3.1 document (GET /openapi.json); a new object on every call. */
export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    info: { title: 'certgate admin API', version: '1.0.0', description: 'Domain bindings, certificates, health and events of one certgate instance (the registry and certificates are shared by every instance on the same storage).' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: '`admin.token` or CERTGATE_ADMIN_TOKEN' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'string' }, field: { type: 'string', description: 'The offending field, for validation errors.' } },
        },
        BindingInput: z.toJSONSchema(bindingInputSchema, { io: 'input' }),
        Hostname: z.toJSONSchema(hostnameSchema, { io: 'output' }),
        Binding: {
          description: 'A hostname; GET of one name with acme.dns.delegation also has `dcv`.',
          allOf: [
            ref('Hostname'),
            {
              type: 'object',
              properties: {
                dcv: {
                  type: 'object',
                  description: 'With acme.dns.delegation only (GET): the CNAME the customer creates to delegate validation; ready = it answers that target now.',
                  required: ['name', 'type', 'target', 'ready'],
                  properties: { name: { type: 'string' }, type: { type: 'string', enum: ['CNAME'] }, target: { type: 'string' }, ready: { type: 'boolean' } },
                },
              },
            },
          ],
        },
        MissingRecords: {
          type: 'object',
          required: ['error', 'records'],
          properties: {
            error: { type: 'string' },
            records: { type: 'array', description: 'The records to create (the CNAME; for a plain name, or A/AAAA at this platform).', items: { type: 'object', properties: { name: { type: 'string' }, type: { type: 'string' }, target: { type: 'string' } } } },
          },
        },
        BindingPage: {
          type: 'object',
          required: ['items', 'nextCursor'],
          properties: {
            items: { type: 'array', items: ref('Hostname') },
            nextCursor: { type: ['string', 'null'], description: 'The cursor of the next page; null only at the end (a filtered page may hold fewer items than limit, even none, before the end).' },
          },
        },
        Certificate: z.toJSONSchema(certificateStatusSchema, { io: 'output' }),
        NoCertificate: z.toJSONSchema(noCertificateSchema, { io: 'output' }),
        IssueResult: {
          type: 'object',
          required: ['source', 'certificate'],
          properties: { source: { type: 'string', enum: ['storage', 'issued'], description: 'Already stored, or issued by this call.' }, certificate: ref('Certificate') },
        },
      },
    },
    security: auth,
    paths: {
      '/v1/domains': {
        get: {
          summary: 'List hostnames (bindings with their status) in name order, one page at a time; statuses come from storage, no DNS',
          parameters: [
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'nextCursor of the previous page' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
            {
              name: 'status',
              in: 'query',
              schema: { type: 'string', enum: [...HOSTNAME_STATUSES] },
              description: 'Only hostnames with this status. Each call reads at most 2000 bindings from the cursor on; follow nextCursor until it is null.',
            },
            { name: 'q', in: 'query', schema: { type: 'string', maxLength: 253 }, description: 'Only names containing this text (case-insensitive)' },
          ],
          responses: { 200: json(ref('BindingPage'), 'A page'), 400: error('Bad cursor, limit or status'), 401: error('No or wrong token') },
        },
      },
      '/v1/domains/{name}': {
        parameters: [nameParam],
        put: {
          requestBody: { required: true, content: { 'application/json': { schema: ref('BindingInput') } } },
          summary: 'Bind (create or replace); the DNS, CAA and ownership checks run before the answer',
          responses: { 200: json(ref('Hostname'), 'Replaced'), 201: json(ref('Hostname'), 'Created'), 400: error('Invalid name or body; a wildcard name (*.alice.com) without acme.dns.delegation'), 401: error('No or wrong token') },
        },
        get: {
          summary: 'One hostname: binding, status, verification, errors',
          parameters: [{ name: 'check', in: 'query', schema: { type: 'boolean', default: false }, description: 'true: run the DNS, CAA and ownership checks now (each bounded by its resolver time-out) instead of showing the last results.' }],
          responses: { 200: json(ref('Binding'), 'The hostname'), 404: error('Not bound'), 400: error('Bad check'), 401: error('No or wrong token') },
        },
        delete: {
          summary: 'Unbind: remove the binding and the certificate everywhere',
          responses: { 204: { description: 'Unbound' }, 404: error('Was not bound (any certificate was removed anyway)'), 401: error('No or wrong token') },
        },
      },
      '/v1/domains/{name}/issue': {
        parameters: [nameParam],
        post: {
          summary: 'Obtain the certificate now (policy applies; with acme.dns.delegation a bound name whose CNAME is in place is ordered by dns-01 through it)',
          responses: {
            200: json(ref('IssueResult'), 'Ready'),
            403: error('Policy denies the name'),
            404: error('DCV delegation: CNAME in place but the name is not bound'),
            409: error('The binding is disabled'),
            422: json(ref('MissingRecords'), 'DCV delegation: neither the CNAME nor A/AAAA pointing here; no order placed'),
            502: error('Issuance failed'),
            401: error('No or wrong token'),
          },
        },
      },
      '/v1/certificates/{name}': {
        parameters: [certificateNameParam],
        get: {
          summary: 'Certificate status, with the failures since the last success (attempts, last error, next retry)',
          responses: { 200: json(ref('Certificate'), 'Status'), 404: json(ref('NoCertificate'), 'No certificate; the failures, if any, say why'), 401: error('No or wrong token') },
        },
        delete: {
          summary: 'Delete the certificate everywhere, optionally revoking it first',
          parameters: [{ name: 'revoke', in: 'query', schema: { type: 'boolean', default: false } }],
          responses: { 204: { description: 'Deleted' }, 404: error('No certificate'), 502: error('Revocation failed (nothing deleted)'), 401: error('No or wrong token') },
        },
      },
      '/v1/certificates/{name}/renew': {
        parameters: [certificateNameParam],
        post: { summary: 'Renew now', responses: { 200: json(ref('Certificate'), 'Renewed'), 502: error('Renewal failed'), 401: error('No or wrong token') } },
      },
      '/v1/webhooks/deliveries': {
        get: {
          summary: 'Webhook deliveries (one per event and endpoint), with attempts and the last error; status=failed lists what did not get through',
          parameters: [
            { name: 'status', in: 'query', schema: { type: 'string', enum: [...DELIVERY_STATUSES] } },
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'nextCursor of the previous page' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
          ],
          responses: { 200: json(deliveryPage, 'One page of deliveries'), 400: error('Bad status, cursor or limit'), 401: error('No or wrong token') },
        },
      },
      '/v1/events': {
        get: {
          summary: 'Server-Sent Events: issuance-started/-succeeded/-failed, renewed, deleted, domain-bound, domain-unbound',
          responses: { 200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, 401: error('No or wrong token'), 503: error('admin.maxEventClients streams are already open (Retry-After: 30)') },
        },
      },
      '/v1/events/recent': {
        get: {
          summary: 'Recently streamed events, newest first (in memory, since this admin API started)',
          parameters: [
            { name: 'domain', in: 'query', schema: { type: 'string' }, description: 'Only this name’s events' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 100 } },
          ],
          responses: { 200: { description: '{ events: [{ type, domain, at, data }], since }' }, 400: error('Bad domain or limit'), 401: error('No or wrong token') },
        },
      },
      '/v1/stats': {
        get: {
          summary: 'Certificates expiring per UTC day (next 90 days) and issuances/renewals/failures per UTC hour (last 48, since this admin API started)',
          responses: { 200: { description: '{ expiringPerDay: [{ day, count }], perHour: [{ hour, issued, renewed, failed }], since }' }, 401: error('No or wrong token') },
        },
      },
      '/ui/': { get: { summary: 'The dashboard (HTML; its files need no token, its data calls do)', security: [], responses: { 200: { description: 'text/html' } } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { 200: { description: 'Prometheus text format' } } } },
      '/healthz': { get: { summary: 'Liveness', security: [], responses: { 200: { description: 'Alive' } } } },
      '/readyz': { get: { summary: 'Readiness: storage answers, listeners up', security: [], responses: { 200: { description: 'Ready' }, 503: error('Not ready') } } },
      '/openapi.json': { get: { summary: 'This document', security: [], responses: { 200: { description: 'OpenAPI 3.1' } } } },
    },
  };
}
