// The body of PUT /v1/domains/{name}, as a zod schema (validation and the OpenAPI document). Kept
// out of src/policy/registry.ts so gateway workers that do not run the admin API never load zod.
import { z } from 'zod';
import { BINDING_STATUSES } from '../policy/registry.ts';
import { parseUpstream } from '../net/upstream.ts';

/**
 * The body of PUT /v1/domains/{name}. Unknown fields are errors, so typos never pass silently.
 * The switch is `enabled` (default true); the legacy `status: active|disabled` still works and
 * is mapped to it (both given and disagreeing: 400). The output always has `enabled`, no `status`.
 */
export const bindingInputSchema = z
  .strictObject({
  upstream: z
    .string()
    .refine(
      (v) => {
        try {
          parseUpstream(v);
          return true;
        } catch {
          return false;
        }
      },
      { message: 'must be an http(s) origin without path, like "http://10.0.0.7:8080"' },
    )
    .optional(),
  tenant: z.string().min(1).max(200).optional(),
  label: z.string().min(1).max(200).optional(),
  enabled: z.boolean({ message: 'must be true or false' }).optional(),
  status: z.enum(BINDING_STATUSES, { message: `must be one of ${BINDING_STATUSES.join(', ')} (the legacy spelling of enabled: true|false)` }).optional(),
})
  .superRefine((b, ctx) => {
    if (b.enabled !== undefined && b.status !== undefined && b.enabled !== (b.status === 'active')) {
      ctx.addIssue({ code: 'custom', path: ['status'], message: `contradicts enabled: ${b.enabled}; send only enabled` });
    }
  })
  .transform(({ status, enabled, ...rest }) => ({ ...rest, enabled: enabled ?? status !== 'disabled' }));
/** A PUT /v1/domains/:name body as a client may send it (enabled defaults to true). */
export type BindingInput = z.input<typeof bindingInputSchema>;
