// The dashboard app: sign-in, the header with the live-stream state, and two pages chosen by the
// URL's hash (#/ the overview, #/domains/<name> a hostname). The hash only ever holds a name,
// never the token; signed in, the app follows GET /v1/events once and fans it out (live.ts).
import { h, type ComponentChild } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { followEvents, token, whenUnauthorized } from './api.ts';
import { DomainView } from './domain.ts';
import { publish } from './live.ts';
import { Overview } from './overview.ts';

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const onChange = () => setHash(location.hash);
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return hash;
}

/** The whole app (mounted by main.ts). */
export function App(): ComponentChild {
  const [signedIn, setSignedIn] = useState(token.get() !== null);
  const [notice, setNotice] = useState('');
  const [live, setLive] = useState(false);
  const hash = useHash();
  useEffect(
    () =>
      whenUnauthorized(() => {
        token.clear();
        setSignedIn(false);
        setNotice('The admin API no longer accepts this token: sign in again.');
      }),
    [],
  );
  useEffect(() => {
    if (!signedIn) return;
    const stop = new AbortController();
    followEvents(publish, setLive, stop.signal);
    return () => stop.abort();
  }, [signedIn]);
  if (!signedIn) return h(SignIn, { notice, onSignedIn: () => (setNotice(''), setSignedIn(true)) });
  const m = /^#\/domains\/(.+)$/.exec(hash);
  const signOut = () => (token.clear(), setSignedIn(false));
  return h(
    'div',
    { class: 'app' },
    h(
      'header',
      null,
      h('h1', null, h('a', { href: '#/' }, 'certgate')),
      h('span', { class: live ? 'live on' : 'live', id: 'live', title: 'GET /v1/events' }, live ? 'live' : 'reconnecting…'),
      h('button', { type: 'button', onClick: signOut }, 'Sign out'),
    ),
    m ? h(DomainView, { key: m[1], name: decodeURIComponent(m[1]!) }) : h(Overview, null),
  );
}

/** The sign-in form: the token is checked with one call, then kept in sessionStorage. */
function SignIn(props: { notice: string; onSignedIn: () => void }): ComponentChild {
  const [value, setValue] = useState('');
  const [error, setError] = useState(props.notice);
  const submit = async (e: Event) => {
    // Never a form submission: the token must not end up in a URL or a request body.
    e.preventDefault();
    const candidate = value.trim();
    if (!candidate) return;
    try {
      const res = await fetch('/v1/domains?limit=1', { headers: { authorization: `Bearer ${candidate}` }, cache: 'no-store' });
      if (res.status === 401) return setError('The admin API refused this token.');
      if (!res.ok) return setError(((await res.json().catch(() => ({}))) as { error?: string }).error ?? `HTTP ${res.status}`);
    } catch (err) {
      return setError(`The admin API cannot be reached: ${(err as Error).message}`);
    }
    token.set(candidate);
    props.onSignedIn();
  };
  return h(
    'main',
    { class: 'signin' },
    h(
      'form',
      { class: 'card', onSubmit: submit },
      h('h1', null, 'certgate'),
      h('p', null, 'Sign in with the admin token (admin.token or CERTGATE_ADMIN_TOKEN). It is kept in this tab only.'),
      h('label', null, 'Admin token', h('input', { type: 'password', name: 'token', autocomplete: 'off', value, onInput: (e: Event) => setValue((e.currentTarget as HTMLInputElement).value) })),
      h('button', { type: 'submit' }, 'Sign in'),
      error && h('p', { class: 'error', role: 'alert' }, error),
    ),
  );
}
