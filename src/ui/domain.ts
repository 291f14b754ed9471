// A hostname's page: its binding and status with the sentences that say what to fix, its
// certificate (or why there is none), its recent events, and the actions bind/unbind, issue,
// renew. Live events about the name are added to the list and reload the page (throttled).
import { h, type ComponentChild } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, call, certificatePath, domainPath } from './api.ts';
import { eventName, useLive, useThrottle } from './live.ts';
import { StatusBadge } from './overview.ts';
import { isEnabled, type Certificate, type DomainItem, type Failures, type RecentEvent } from './types.ts';

interface Loaded {
  binding: DomainItem | null;
  certificate: Certificate | null;
  failures: Failures;
  events: RecentEvent[];
}

async function loadDomain(name: string): Promise<Loaded> {
  const orNull = <T>(promise: Promise<T>, on404: (err: ApiError) => T) => promise.catch((err: unknown) => (err instanceof ApiError && err.status === 404 ? on404(err) : Promise.reject(err as Error)));
  const [binding, cert, recent] = await Promise.all([
    orNull(call<DomainItem | null>('GET', domainPath(name)), () => null),
    orNull(call<Certificate | Failures>('GET', certificatePath(name)), (err) => err.body as Failures),
    call<{ events: RecentEvent[] }>('GET', `/v1/events/recent?domain=${encodeURIComponent(name)}&limit=50`),
  ]);
  const certificate = cert && 'notAfter' in cert ? (cert as Certificate) : null;
  return { binding, certificate, failures: cert ?? {}, events: recent.events };
}

/** The page of one hostname (`name` as in the URL's hash). */
export function DomainView({ name }: { name: string }): ComponentChild {
  const [data, setData] = useState<Loaded | null>(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState('');
  const [notice, setNotice] = useState<{ ok: boolean; text: string } | null>(null);
  const load = useCallback(() => {
    loadDomain(name).then(
      (d) => (setData(d), setError('')),
      (err: Error) => setError(err.message),
    );
  }, [name]);
  useEffect(load, [load]);
  const reload = useThrottle(load, 1000);
  useLive((event) => eventName(event) === name && reload());

  const act = async (label: string, method: string, path: string, body?: unknown) => {
    setBusy(label);
    setNotice(null);
    try {
      await call(method, path, body);
      setNotice({ ok: true, text: `${label}: done.` });
      if (method === 'DELETE' && path === domainPath(name)) location.hash = '#/';
    } catch (err) {
      setNotice({ ok: false, text: `${label}: ${(err as Error).message}` });
    } finally {
      setBusy('');
      load();
    }
  };
  const b = data?.binding;
  // PUT replaces the binding: send its fields back with the switch flipped (undefined ones drop out of the JSON).
  const toggle = b && { upstream: b.upstream, tenant: b.tenant, label: b.label, status: isEnabled(b) ? 'disabled' : 'active' };
  const actions = h(
    'div',
    { class: 'actions' },
    b
      ? h('button', { type: 'button', disabled: !!busy, onClick: () => confirm(`Unbind ${name}? Its certificate is deleted too.`) && act('Unbind', 'DELETE', domainPath(name)) }, 'Unbind')
      : h('button', { type: 'button', disabled: !!busy, onClick: () => act('Bind', 'PUT', domainPath(name), {}) }, 'Bind'),
    b && h('button', { type: 'button', disabled: !!busy, onClick: () => act(isEnabled(b) ? 'Disable' : 'Enable', 'PUT', domainPath(name), toggle) }, isEnabled(b) ? 'Disable' : 'Enable'),
    h('button', { type: 'button', disabled: !!busy, onClick: () => act('Issue', 'POST', `${domainPath(name)}/issue`) }, 'Issue'),
    h('button', { type: 'button', disabled: !!busy || !data?.certificate, onClick: () => act('Renew', 'POST', `${certificatePath(name)}/renew`) }, 'Renew'),
    busy && h('span', { class: 'hint' }, `${busy}…`),
  );
  return h(
    'main',
    { class: 'domain', 'data-domain': name },
    h('p', null, h('a', { href: '#/' }, '← All hostnames')),
    h('h2', null, name, ' ', b ? h(StatusBadge, { status: b.status }) : h('span', { class: 'badge status-unbound' }, 'not bound')),
    actions,
    notice && h('p', { class: notice.ok ? 'ok' : 'error', role: 'status' }, notice.text),
    error && h('p', { class: 'error', role: 'alert' }, error),
    data && h(Details, { data }),
  );
}

function Details({ data }: { data: Loaded }): ComponentChild {
  const { binding: b, certificate: c, failures: f } = data;
  const row = (k: string, v: unknown) => h('tr', null, h('th', null, k), h('td', null, v === undefined || v === null || v === '' ? '—' : String(v)));
  const when = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString() : undefined);
  return h(
    'div',
    { class: 'grid' },
    h(
      'section',
      { class: 'card' },
      h('h3', null, 'Status'),
      b?.errors?.length ? h('ul', { class: 'errors' }, b.errors.map((e) => h('li', null, e))) : h('p', { class: 'hint' }, b ? 'No problems reported.' : 'This name is not bound.'),
      b && h('table', { class: 'kv' }, h('tbody', null, row('Enabled', isEnabled(b) ? 'yes' : 'no'), row('Upstream', b.upstream), row('Tenant', b.tenant), row('Label', b.label), row('Bound', when(b.createdAt)), row('Updated', when(b.updatedAt)))),
      b?.verification && h('details', { open: true }, h('summary', null, 'Verification'), h('pre', null, JSON.stringify(b.verification, null, 2))),
    ),
    h(
      'section',
      { class: 'card' },
      h('h3', null, 'Certificate'),
      c
        ? h('table', { class: 'kv' }, h('tbody', null, row('Issuer', c.issuer), row('CA', c.ca), row('Names', c.names.join(', ')), row('Not after', when(c.notAfter)), row('Next renewal', when(c.nextRenewal)), row('Obtained', when(c.obtainedAt)), row('Key', c.keyType), row('Serial', c.serialNumber)))
        : h('p', { class: 'hint' }, 'No certificate yet.'),
      f.lastError && h('p', { class: 'error' }, `Last error (${f.lastError.step ?? 'unknown step'}, ${when(f.lastError.at)}): ${f.lastError.error}`),
      (f.attempts ?? 0) > 0 && h('p', { class: 'hint' }, `${f.attempts} failed attempt(s); ${f.givenUp ? 'given up' : f.nextRetryAt ? `next retry ${when(f.nextRetryAt)}` : ''}`),
    ),
    h(
      'section',
      { class: 'card wide' },
      h('h3', null, 'Events'),
      data.events.length === 0
        ? h('p', { class: 'hint' }, 'No events since this admin API started.')
        : h('ul', { class: 'events' }, data.events.map((e) => h('li', null, h('time', null, when(e.at)), ' ', h('strong', null, e.type), e.data.error ? ` — ${String(e.data.error)}` : ''))),
    ),
  );
}
