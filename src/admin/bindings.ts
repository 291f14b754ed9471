// The body of PUT /v1/domains/{name}, as a zod schema (validation and the OpenAPI document). Kept
// out of src/policy/registry.ts so gateway workers that do not run the admin API never load zod.
import { z } from 'zod';
import { BINDING_STATUSES } from '../policy/registry.ts';
import { parseUpstream } from '../net/upstream.ts';

/** The body of PUT /v1/domains/{name}. Unknown fields are errors, so typos never pass silently. */
export const bindingInputSchema = z.strictObject({
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
  status: z.enum(BINDING_STATUSES, { message: `must be one of ${BINDING_STATUSES.join(', ')}` }).default('active'),
});
/** A PUT /v1/domains/:name body as a client may send it (status defaults to active). */
export type BindingInput = z.input<typeof bindingInputSchema>;
