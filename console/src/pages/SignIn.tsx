import { useRef, useState } from 'preact/hooks';
import { signIn, type Session, ApiError } from '../api';
import { Field } from '../components/ui';

export function SignIn(props: { onSignedIn: (s: Session) => void }) {
  const tokenRef = useRef<HTMLInputElement>(null);
  const [name, setName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const input = tokenRef.current!;
    // The token is read straight from the input and never kept in state.
    const token = input.value.trim();
    if (!token) {
      setError('Enter a token or an API key.');
      input.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const s = await signIn(token, name);
      input.value = '';
      props.onSignedIn(s);
    } catch (err) {
      input.value = '';
      setBusy(false);
      if (err instanceof ApiError && err.status === 401) setError(err.message || 'That token is not valid.');
      else if (err instanceof ApiError) setError(err.message);
      else setError('Sign-in failed.');
      input.focus();
    }
  };

  return (
    <div class="signin-wrap">
      <form class="signin" onSubmit={submit} noValidate aria-labelledby="signin-title">
        <div class="brand big">
          <span class="logo" aria-hidden="true">◆</span> obleth
        </div>
        <h1 id="signin-title">Sign in to the console</h1>
        <p class="muted">
          Use the admin token, a viewer token, or a tenant API key. The session is kept in an HttpOnly cookie; the
          token is not stored by the page.
        </p>
        <Field label="Token or API key" id="token" error={error}>
          <input id="token" name="token" type="password" ref={tokenRef} autoComplete="off" spellcheck={false} autoFocus />
        </Field>
        <Field label="Operator name (optional)" id="operator" hint="Recorded as the actor in the audit trail (admin and viewer).">
          <input id="operator" name="operator" value={name} autoComplete="username" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </Field>
        <button type="submit" class="btn primary wide" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </div>
  );
}
