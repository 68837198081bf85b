import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import './styles.css';
import { loadSession, setUnauthorizedHandler, signOut, type Session } from './api';
import { session } from './session';
import { navigate, useRoute } from './router';
import { Store, useStore } from './store';
import { startLens, stopLens, lens } from './lens';
import { Link, Loading, ErrorBox } from './components/ui';
import { SignIn } from './pages/SignIn';
import { Overview } from './pages/Overview';
import { Lens } from './pages/Lens';
import { Tenants } from './pages/Tenants';
import { TenantDetail } from './pages/TenantDetail';
import { Keys } from './pages/Keys';
import { Groups } from './pages/Groups';
import { Models } from './pages/Models';
import { Usage } from './pages/Usage';
import { Audit } from './pages/Audit';
import { Me } from './pages/Me';
import { useState } from 'preact/hooks';

const NAV: [string, string][] = [
  ['/overview', 'Overview'],
  ['/lens', 'Scheduler lens'],
  ['/tenants', 'Tenants'],
  ['/keys', 'Keys'],
  ['/groups', 'Groups'],
  ['/models', 'Models'],
  ['/usage', 'Usage'],
  ['/audit', 'Audit'],
];

const bootError = new Store<unknown>(null);

async function checkSession() {
  bootError.set(null);
  try {
    const s = await loadSession();
    applySession(s);
  } catch (e) {
    // The gateway did not answer: say so, with a retry.
    bootError.set(e);
  }
}

export function applySession(s: Session | null) {
  const prev = session.get();
  session.set(s);
  if (s && s.role !== 'tenant') {
    if (!prev || prev.role === 'tenant' || lens.get().status === 'off') startLens(50, () => void recheck());
  } else {
    stopLens();
  }
}

let rechecking = false;
async function recheck() {
  if (rechecking) return;
  rechecking = true;
  try {
    const s = await loadSession();
    if (!s) {
      applySession(null);
      navigate('/signin', true);
    }
  } catch {
    /* offline: the lens retries */
  } finally {
    rechecking = false;
  }
}

setUnauthorizedHandler(() => {
  applySession(null);
  navigate('/signin', true);
});

function Header(props: { s: Session; path: string }) {
  const [err, setErr] = useState<unknown>(null);
  const logout = async () => {
    try {
      await signOut();
    } catch (e) {
      setErr(e);
    }
    applySession(null);
    navigate('/signin', true);
  };
  const st = useStore(lens).status;
  return (
    <header class="topbar">
      <div class="brand">
        <span class="logo" aria-hidden="true">◆</span> obleth <span class="brand-sub">console</span>
      </div>
      {props.s.role !== 'tenant' ? (
        <nav class="mainnav" aria-label="Main">
          {NAV.map(([to, label]) => (
            <Link key={to} to={to} class={props.path === to || (to !== '/overview' && props.path.startsWith(to + '/')) ? 'active' : ''}>
              {label}
            </Link>
          ))}
        </nav>
      ) : (
        <nav class="mainnav" aria-label="Main">
          <Link to="/me" class="active">
            My tenant
          </Link>
        </nav>
      )}
      <div class="who">
        {props.s.role !== 'tenant' && (
          <span class={`live-dot ${st}`} title={`Lens stream: ${st}`} aria-label={`Lens stream ${st}`} />
        )}
        <span class={`role role-${props.s.role}`} data-testid="role">
          {props.s.role}
        </span>
        <span class="actor" data-testid="actor">
          {props.s.role === 'tenant' ? props.s.tenant?.name : props.s.actor}
        </span>
        {props.s.role === 'viewer' && <span class="readonly-hint">read-only</span>}
        <button type="button" class="btn small" onClick={logout}>
          Sign out
        </button>
        {err ? <ErrorBox error={err} /> : null}
      </div>
    </header>
  );
}

function Page(props: { path: string; s: Session }) {
  const p = props.path;
  if (props.s.role === 'tenant') return <Me />;
  if (p === '/overview' || p === '/') return <Overview />;
  if (p === '/lens') return <Lens />;
  if (p === '/tenants') return <Tenants />;
  if (p.startsWith('/tenants/')) return <TenantDetail name={decodeURIComponent(p.slice('/tenants/'.length))} />;
  if (p === '/keys') return <Keys />;
  if (p === '/groups') return <Groups />;
  if (p === '/models') return <Models />;
  if (p === '/usage') return <Usage />;
  if (p === '/audit') return <Audit />;
  if (p === '/me')
    return (
      <div class="page">
        <h1>My tenant</h1>
        <p class="empty">This page is for tenant sessions (signed in with a tenant API key).</p>
      </div>
    );
  return (
    <div class="page">
      <h1>Not found</h1>
      <p class="empty">
        There is no console page at <code>{p}</code>. <Link to="/overview">Go to the overview</Link>.
      </p>
    </div>
  );
}

function App() {
  const s = useStore(session);
  const { path } = useRoute();
  useEffect(() => {
    void checkSession();
  }, []);
  useEffect(() => {
    if (s === undefined) return;
    if (!s && path !== '/signin') navigate('/signin', true);
    else if (s && (path === '/signin' || path === '/')) navigate(s.role === 'tenant' ? '/me' : '/overview', true);
    else if (s && s.role === 'tenant' && path !== '/me') navigate('/me', true);
  }, [s, path]);
  useEffect(() => {
    const names: Record<string, string> = { '/signin': 'Sign in', '/me': 'My tenant' };
    const nav = NAV.find(([to]) => path === to || path.startsWith(to + '/'));
    document.title = `${nav ? nav[1] : names[path] ?? 'Console'} · obleth`;
  }, [path]);
  const boot = useStore(bootError);
  if (s === undefined)
    return boot ? (
      <div class="signin-wrap">
        <div class="signin">
          <h1>The console cannot reach the gateway</h1>
          <ErrorBox error={boot} onRetry={() => void checkSession()} />
        </div>
      </div>
    ) : (
      <Loading label="Checking the session…" />
    );
  if (!s) return <SignIn onSignedIn={(ns) => applySession(ns)} />;
  return (
    <div class="shell">
      <Header s={s} path={path} />
      <main class="main">
        <Page path={path} s={s} />
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
