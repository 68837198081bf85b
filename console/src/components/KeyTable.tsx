import { useState } from 'preact/hooks';
import { post, enc } from '../api';
import type { ApiKey } from '../types';
import { Badge, ConfirmDialog, Dialog, Field, FormFooter, Link, SecretDialog, apiFieldErrors, val } from './ui';
import { fmtAgo, fmtTime, parseOptInt } from '../format';

export function keyState(k: ApiKey, now = Date.now()): { label: string; tone: 'ok' | 'bad' | 'warn' | 'muted' } {
  if (k.revoked_at && k.revoked_at <= now) return { label: 'revoked', tone: 'bad' };
  if (k.expires_at && k.expires_at <= now) return { label: 'expired', tone: 'muted' };
  if (k.revoked_at || k.expires_at) return { label: 'expiring', tone: 'warn' };
  return { label: 'active', tone: 'ok' };
}

export interface NewSecret {
  secret: string;
  prefix: string;
  note?: string;
}

function RotateDialog(props: { k: ApiKey; onClose: () => void; onDone: (s: NewSecret) => void }) {
  const [overlap, setOverlap] = useState('3600');
  const [name, setName] = useState(props.k.name ?? '');
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [formErr, setFormErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const o = parseOptInt(overlap, 0);
    if (typeof o === 'string') return setErrs({ overlap_secs: o });
    setErrs({});
    setBusy(true);
    try {
      const body: Record<string, unknown> = {};
      if (o !== null) body.overlap_secs = o;
      if (name.trim()) body.name = name.trim();
      const r = await post<ApiKey & { secret: string }>(`/api/v1/keys/${enc(props.k.id)}/rotate`, body);
      props.onDone({
        secret: r.secret,
        prefix: r.prefix,
        note: o ? `The old key ${props.k.prefix} keeps working for ${o} s.` : `The old key ${props.k.prefix} is revoked now.`,
      });
    } catch (err) {
      const r = apiFieldErrors(err, ['overlap_secs', 'name']);
      setErrs(r.fields);
      setFormErr(r.form);
      setBusy(false);
    }
  };
  return (
    <Dialog title={`Rotate key ${props.k.prefix}`} onClose={props.onClose}>
      <form onSubmit={submit} noValidate class="form">
        <p>A new key is issued for the same tenant; the old one stops working after the overlap.</p>
        <Field label="Overlap (seconds)" id="rot-overlap" error={errs.overlap_secs} hint="0 revokes the old key at once.">
          <input id="rot-overlap" inputMode="numeric" value={overlap} onInput={(e) => setOverlap(val(e))} />
        </Field>
        <Field label="New key name (optional)" id="rot-name" error={errs.name}>
          <input id="rot-name" value={name} onInput={(e) => setName(val(e))} autoComplete="off" />
        </Field>
        <FormFooter error={formErr} busy={busy} busyLabel="Rotating…" label="Rotate key" onCancel={props.onClose} />
      </form>
    </Dialog>
  );
}

export function KeyTable(props: { keys: ApiKey[]; write: boolean; showTenant?: boolean; onChanged: () => void; tenantNames?: Record<string, string> }) {
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [rotating, setRotating] = useState<ApiKey | null>(null);
  const [secret, setSecret] = useState<NewSecret | null>(null);
  const now = Date.now();
  return (
    <>
      <div class="table-wrap">
        <table class="data" aria-label="API keys">
          <thead>
            <tr>
              <th>Prefix</th>
              <th>Name</th>
              {props.showTenant && <th>Tenant</th>}
              <th>State</th>
              <th>Created</th>
              <th>Expires</th>
              <th>Revoked</th>
              <th class="actions-col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {props.keys.map((k) => {
              const st = keyState(k, now);
              const dead = st.label === 'revoked' || st.label === 'expired';
              return (
                <tr key={k.id} data-key={k.prefix}>
                  <td>
                    <code>{k.prefix}</code>
                  </td>
                  <td>{k.name ?? <span class="muted">—</span>}</td>
                  {props.showTenant && (
                    <td>
                      <Link to={`/tenants/${encodeURIComponent(props.tenantNames?.[k.tenant_id] ?? k.tenant_id)}`}>
                        {props.tenantNames?.[k.tenant_id] ?? k.tenant_id}
                      </Link>
                    </td>
                  )}
                  <td>
                    <Badge tone={st.tone}>{st.label}</Badge>
                  </td>
                  <td title={fmtTime(k.created_at)}>{fmtAgo(k.created_at, now)}</td>
                  <td title={fmtTime(k.expires_at)}>{k.expires_at ? fmtAgo(k.expires_at, now) : <span class="muted">never</span>}</td>
                  <td title={fmtTime(k.revoked_at)}>{k.revoked_at ? fmtAgo(k.revoked_at, now) : <span class="muted">—</span>}</td>
                  <td class="actions-col">
                    <button type="button" class="btn small" disabled={!props.write || dead} onClick={() => setRotating(k)} aria-label={`Rotate key ${k.prefix}`}>
                      Rotate
                    </button>
                    <button
                      type="button"
                      class="btn small danger-outline"
                      disabled={!props.write || st.label === 'revoked'}
                      onClick={() => setRevoking(k)}
                      aria-label={`Revoke key ${k.prefix}`}
                    >
                      Revoke
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {revoking && (
        <ConfirmDialog
          title={`Revoke key ${revoking.prefix}`}
          body={<p>Requests with this key are refused at once. This cannot be undone.</p>}
          confirmLabel="Revoke key"
          danger
          onConfirm={async () => {
            await post(`/api/v1/keys/${enc(revoking.id)}/revoke`);
            props.onChanged();
          }}
          onClose={() => setRevoking(null)}
        />
      )}
      {rotating && (
        <RotateDialog
          k={rotating}
          onClose={() => setRotating(null)}
          onDone={(s) => {
            setRotating(null);
            setSecret(s);
            props.onChanged();
          }}
        />
      )}
      {secret && <SecretDialog secret={secret.secret} prefix={secret.prefix} note={secret.note} onClose={() => setSecret(null)} />}
    </>
  );
}

export function CreateKeyDialog(props: { tenant: string; onClose: () => void; onCreated: (s: NewSecret) => void }) {
  const [name, setName] = useState('');
  const [expires, setExpires] = useState('');
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [formErr, setFormErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const x = parseOptInt(expires, 1);
    if (typeof x === 'string') return setErrs({ expires_in_secs: x });
    setErrs({});
    setBusy(true);
    try {
      const body: Record<string, unknown> = {};
      if (name.trim()) body.name = name.trim();
      if (x !== null) body.expires_in_secs = x;
      const r = await post<ApiKey & { secret: string }>(`/api/v1/tenants/${enc(props.tenant)}/keys`, body);
      props.onCreated({ secret: r.secret, prefix: r.prefix });
    } catch (err) {
      const r = apiFieldErrors(err, ['name', 'expires_in_secs']);
      setErrs(r.fields);
      setFormErr(r.form);
      setBusy(false);
    }
  };
  return (
    <Dialog title={`New key for ${props.tenant}`} onClose={props.onClose}>
      <form onSubmit={submit} noValidate class="form">
        <Field label="Key name (optional)" id="key-name" error={errs.name}>
          <input id="key-name" value={name} onInput={(e) => setName(val(e))} autoComplete="off" />
        </Field>
        <Field label="Expires in (seconds, optional)" id="key-expires" error={errs.expires_in_secs} hint="Empty: never expires.">
          <input id="key-expires" inputMode="numeric" value={expires} onInput={(e) => setExpires(val(e))} />
        </Field>
        <FormFooter error={formErr} busy={busy} busyLabel="Creating…" label="Create key" onCancel={props.onClose} />
      </form>
    </Dialog>
  );
}
