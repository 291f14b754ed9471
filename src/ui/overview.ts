// The dashboard's first page: the charts, a form to bind a name, and the hostname table.
//
// The table never loads the whole registry: each page is one GET /v1/domains call (limit,
// cursor; `q` searches names, `status` filters), so it is as fast at 100,000 bindings as at ten.
// Going back uses the cursors of the pages already visited. Live events (a binding made or
// removed, an issuance) reload the page shown, at most once a second.
import { h, type ComponentChild } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, call, domainPath } from './api.ts';
import { BarChart } from './charts.ts';
import { useLive, useThrottle } from './live.ts';
import { isEnabled, STATUSES, type DomainItem, type DomainPage, type Stats } from './types.ts';

const PAGE_SIZES = [25, 50, 100];
const TABLE_EVENTS = new Set(['domain-bound', 'domain-unbound', 'issuance-succeeded', 'issuance-failed', 'renewed', 'deleted']);

/** The first page: charts, bind form, hostname table. */
export function Overview(): ComponentChild {
  return h('main', null, h(StatsCharts, null), h(BindForm, null), h(DomainTable, null));
}

/** A status as a coloured badge (`data-status` for tests and styles). */
export function StatusBadge(props: { status: string | undefined }): ComponentChild {
  const status = props.status ?? 'unknown';
  return h('span', { class: `badge status-${status}`, 'data-status': status }, status);
}

/** The hostname table of the header. */
function DomainTable(): ComponentChild {
  const [search, setSearch] = useState('');
  const [query, setQuery] = useState('');
  const [status, setStatus] = useState('');
  const [limit, setLimit] = useState(50);
  const [cursors, setCursors] = useState<string[]>(['']);
  const [page, setPage] = useState<DomainPage | null>(null);
  const [error, setError] = useState('');
  const seq = useRef(0);
  const cursor = cursors[cursors.length - 1]!;

  // Typing searches after a pause, from the first page.
  useEffect(() => {
    const timer = setTimeout(() => {
      setQuery(search.trim().toLowerCase());
      setCursors(['']);
    }, 250);
    return () => clearTimeout(timer);
  }, [search]);

  const load = useCallback(async () => {
    const mine = ++seq.current;
    const params = new URLSearchParams({ limit: String(limit) });
    if (cursor) params.set('cursor', cursor);
    if (query) params.set('q', query);
    if (status) params.set('status', status);
    try {
      const answer = await call<DomainPage>('GET', `/v1/domains?${params}`);
      if (mine !== seq.current) return;
      // An API without the status filter answers every binding: filter what it sent.
      setPage({ ...answer, items: status ? answer.items.filter((item) => item.status === status) : answer.items });
      setError('');
    } catch (err) {
      if (mine === seq.current) setError((err as Error).message);
    }
  }, [cursor, query, status, limit]);
  useEffect(() => void load(), [load]);
  const reload = useThrottle(() => void load(), 1000);
  useLive((event) => TABLE_EVENTS.has(event.type) && reload());

  const filters = h(
    'div',
    { class: 'filters' },
    h('input', { type: 'search', placeholder: 'Search names', 'aria-label': 'Search names', value: search, onInput: (e: Event) => setSearch((e.currentTarget as HTMLInputElement).value) }),
    h(
      'select',
      { 'aria-label': 'Status', value: status, onChange: (e: Event) => (setStatus((e.currentTarget as HTMLSelectElement).value), setCursors([''])) },
      h('option', { value: '' }, 'Any status'),
      STATUSES.map((s) => h('option', { value: s }, s)),
    ),
    h(
      'select',
      { 'aria-label': 'Page size', value: String(limit), onChange: (e: Event) => (setLimit(Number((e.currentTarget as HTMLSelectElement).value)), setCursors([''])) },
      PAGE_SIZES.map((n) => h('option', { value: String(n) }, `${n} a page`)),
    ),
  );
  const pager = h(
    'div',
    { class: 'pager' },
    h('button', { type: 'button', disabled: cursors.length === 1, onClick: () => setCursors(cursors.slice(0, -1)) }, '← Previous'),
    h('span', null, `Page ${cursors.length}`),
    h('button', { type: 'button', disabled: !page?.nextCursor, onClick: () => page?.nextCursor && setCursors([...cursors, page.nextCursor]) }, 'Next →'),
  );
  return h(
    'section',
    { class: 'card', id: 'hostnames' },
    h('h2', null, 'Hostnames'),
    filters,
    error && h('p', { class: 'error', role: 'alert' }, error),
    h(
      'table',
      { class: 'domains' },
      h('thead', null, h('tr', null, ['Name', 'Status', 'Enabled', 'Upstream', 'Tenant', 'Problem', 'Updated'].map((c) => h('th', null, c)))),
      h('tbody', null, page === null ? h('tr', null, h('td', { colSpan: 7 }, 'Loading…')) : page.items.length === 0 ? h('tr', null, h('td', { colSpan: 7, class: 'empty' }, 'No hostnames here.')) : page.items.map((item) => h(DomainRow, { key: item.name, item }))),
    ),
    pager,
  );
}

function DomainRow({ item }: { item: DomainItem }): ComponentChild {
  return h(
    'tr',
    { 'data-name': item.name },
    h('td', null, h('a', { href: `#/domains/${encodeURIComponent(item.name)}` }, item.name)),
    h('td', null, h(StatusBadge, { status: item.status })),
    h('td', null, isEnabled(item) ? 'yes' : 'no'),
    h('td', { class: 'mono' }, item.upstream ?? '—'),
    h('td', null, item.tenant ?? '—'),
    h('td', { class: 'problem' }, item.errors?.[0] ?? ''),
    h('td', null, item.updatedAt ? new Date(item.updatedAt).toLocaleString() : '—'),
  );
}

/** Bind a name (PUT /v1/domains/{name}); the table shows it through the live stream. */
function BindForm(): ComponentChild {
  const [name, setName] = useState('');
  const [upstream, setUpstream] = useState('');
  const [tenant, setTenant] = useState('');
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const trimmed = name.trim();
    if (!trimmed) return;
    try {
      await call('PUT', domainPath(trimmed), { ...(upstream.trim() ? { upstream: upstream.trim() } : {}), ...(tenant.trim() ? { tenant: tenant.trim() } : {}) });
      setMessage({ ok: true, text: `${trimmed} is bound.` });
      setName('');
    } catch (err) {
      setMessage({ ok: false, text: err instanceof ApiError ? err.message : `Could not bind ${trimmed}: ${(err as Error).message}` });
    }
  };
  const field = (label: string, value: string, set: (v: string) => void, placeholder: string) =>
    h('label', null, label, h('input', { value, placeholder, onInput: (e: Event) => set((e.currentTarget as HTMLInputElement).value) }));
  return h(
    'section',
    { class: 'card' },
    h('h2', null, 'Bind a hostname'),
    h(
      'form',
      { class: 'bind', onSubmit: submit },
      field('Name', name, setName, 'shop.example.com'),
      field('Upstream (optional)', upstream, setUpstream, 'http://10.0.0.7:8080'),
      field('Tenant (optional)', tenant, setTenant, 'alice'),
      h('button', { type: 'submit' }, 'Bind'),
    ),
    message && h('p', { class: message.ok ? 'ok' : 'error', role: 'status' }, message.text),
  );
}

/** Certificates expiring per day (next 90 days) and issuances/failures per hour (last 48). */
function StatsCharts(): ComponentChild {
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState('');
  const load = useCallback(() => {
    call<Stats>('GET', '/v1/stats').then(
      (s) => (setStats(s), setError('')),
      (err: Error) => setError(err.message),
    );
  }, []);
  useEffect(() => {
    load();
    const timer = setInterval(load, 60_000);
    return () => clearInterval(timer);
  }, [load]);
  const reload = useThrottle(load, 5000);
  useLive((event) => (event.type === 'issuance-succeeded' || event.type === 'renewed' || event.type === 'issuance-failed') && reload());
  if (error) return h('section', { class: 'card' }, h('p', { class: 'error' }, `Charts unavailable: ${error}`));
  if (!stats) return h('section', { class: 'card charts' }, 'Loading charts…');
  return h(
    'section',
    { class: 'card charts' },
    h(BarChart, {
      id: 'chart-expiry',
      title: 'Certificates expiring per day (next 90 days)',
      labels: stats.expiringPerDay.map((d) => d.day.slice(5)),
      series: [{ label: 'expiring', data: stats.expiringPerDay.map((d) => d.count), color: '#d97706' }],
    }),
    h(BarChart, {
      id: 'chart-hourly',
      title: 'Issuances and failures per hour (last 48 hours)',
      stacked: true,
      labels: stats.perHour.map((p) => `${p.hour.slice(11)}h`),
      series: [
        { label: 'issued', data: stats.perHour.map((p) => p.issued), color: '#16a34a' },
        { label: 'renewed', data: stats.perHour.map((p) => p.renewed), color: '#2563eb' },
        { label: 'failed', data: stats.perHour.map((p) => p.failed), color: '#dc2626' },
      ],
    }),
    h('p', { class: 'hint' }, `Hourly counts since this admin API started (${new Date(stats.since).toLocaleString()}).`),
  );
}
