import { useState } from 'preact/hooks';
import { get, post, patch, del, type Page } from '../api';
import type { Model } from '../types';
import { session, canWrite } from '../session';
import { useStore } from '../store';
import { lens } from '../lens';
import { Badge, ConfirmDialog, Dialog, Empty, ErrorBox, Field, FormFooter, Loading, Panel, ReadOnlyHint, apiFieldErrors, useAsync, val, checked } from '../components/ui';
import { fmtAgo, fmtInt, fmtNum, parseOptFloat, parseOptInt } from '../format';

export const modelPath = (name: string) => `/api/v1/models/${name.split('/').map(encodeURIComponent).join('/')}`;

const KNOWN = ['model_name', 'upstream_model', 'api_base', 'api_key', 'input_cost_per_token', 'output_cost_per_token', 'context_window', 'enabled', 'admission_weight', 'max_in_flight', 'tags'];

function ModelForm(props: { model?: Model; onDone: () => void; onCancel: () => void }) {
  const m = props.model;
  const [f, setF] = useState({
    model_name: m?.model_name ?? '',
    upstream_model: m?.upstream_model ?? '',
    api_base: m?.api_base ?? '',
    api_key: '',
    clear_key: false,
    input_cost_per_token: m ? String(m.input_cost_per_token) : '0',
    output_cost_per_token: m ? String(m.output_cost_per_token) : '0',
    context_window: m?.context_window != null ? String(m.context_window) : '',
    enabled: m?.enabled ?? true,
    admission_weight: m ? String(m.admission_weight) : '1',
    max_in_flight: m?.max_in_flight != null ? String(m.max_in_flight) : '',
    tags: (m?.tags ?? []).join(', '),
  });
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [formErr, setFormErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof f) => (e: Event) => setF({ ...f, [k]: val(e) });

  const submit = async (e: Event) => {
    e.preventDefault();
    const ce: Record<string, string> = {};
    if (!m && !f.model_name.trim()) ce.model_name = 'Required.';
    const inCost = parseOptFloat(f.input_cost_per_token, 0);
    const outCost = parseOptFloat(f.output_cost_per_token, 0);
    const ctx = parseOptInt(f.context_window, 1);
    const aw = parseOptFloat(f.admission_weight, 0);
    const mif = parseOptInt(f.max_in_flight, 1);
    if (typeof inCost === 'string') ce.input_cost_per_token = inCost;
    if (typeof outCost === 'string') ce.output_cost_per_token = outCost;
    if (typeof ctx === 'string') ce.context_window = ctx;
    if (typeof aw === 'string') ce.admission_weight = aw;
    else if (aw === 0) ce.admission_weight = 'Must be > 0.';
    if (typeof mif === 'string') ce.max_in_flight = mif;
    setErrs(ce);
    setFormErr(null);
    if (Object.keys(ce).length) return;
    const tags = f.tags
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    const body: Record<string, unknown> = {
      upstream_model: f.upstream_model.trim() || null,
      api_base: f.api_base.trim() || null,
      input_cost_per_token: inCost ?? 0,
      output_cost_per_token: outCost ?? 0,
      context_window: ctx,
      enabled: f.enabled,
      admission_weight: aw ?? 1,
      max_in_flight: mif,
      tags,
    };
    // api_key is write-only: sent only when typed (or cleared explicitly).
    if (f.api_key) body.api_key = f.api_key;
    else if (m && f.clear_key) body.api_key = null;
    if (!m) {
      body.model_name = f.model_name.trim();
      for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
    }
    setBusy(true);
    try {
      if (m) await patch(modelPath(m.model_name), body);
      else await post('/api/v1/models', body);
      setF({ ...f, api_key: '' });
      props.onDone();
    } catch (err) {
      const x = apiFieldErrors(err, KNOWN);
      setErrs(x.fields);
      setFormErr(x.form);
      setBusy(false);
    }
  };

  const input = (k: keyof typeof f, label: string, hint?: string, extra: Record<string, unknown> = {}) => (
    <Field label={label} id={`mf-${k}`} error={errs[k]} hint={hint}>
      <input id={`mf-${k}`} value={f[k] as string} onInput={set(k)} autoComplete="off" aria-invalid={!!errs[k]} {...extra} />
    </Field>
  );

  return (
    <form onSubmit={submit} noValidate class="form" aria-label={m ? `Edit model ${m.model_name}` : 'New model'}>
      <div class="form-grid">
        {input('model_name', 'Model name', m ? 'The name cannot be changed.' : 'What clients send as "model".', { disabled: !!m })}
        {input('upstream_model', 'Upstream model', 'Name sent upstream (empty: the same).')}
        {input('api_base', 'API base URL', 'Empty: the gateway default upstream.')}
        <Field label="Upstream API key" id="mf-api_key" error={errs.api_key} hint={m?.has_api_key ? 'A key is set. Type a new one to replace it; it is never shown.' : 'Write-only; never shown again.'}>
          <input id="mf-api_key" type="password" value={f.api_key} onInput={set('api_key')} autoComplete="new-password" placeholder={m?.has_api_key ? '•••••• (unchanged)' : ''} />
        </Field>
        {input('input_cost_per_token', 'Input cost per token', undefined, { inputMode: 'decimal' })}
        {input('output_cost_per_token', 'Output cost per token', undefined, { inputMode: 'decimal' })}
        {input('context_window', 'Context window (tokens)', 'Empty: unknown.', { inputMode: 'numeric' })}
        {input('max_in_flight', 'Max in flight', 'Empty: no per-model cap.', { inputMode: 'numeric' })}
        {input('admission_weight', 'Admission weight', 'Credit cost relative to a weight-1 model.', { inputMode: 'decimal' })}
        {input('tags', 'Tags', 'Comma-separated (used by model: auto routing).')}
      </div>
      <div class="checks">
        <label>
          <input type="checkbox" checked={f.enabled} onChange={(e) => setF({ ...f, enabled: checked(e) })} /> Enabled
        </label>
        {m?.has_api_key && (
          <label>
            <input type="checkbox" checked={f.clear_key} onChange={(e) => setF({ ...f, clear_key: checked(e) })} /> Remove the stored API key
          </label>
        )}
      </div>
      <FormFooter error={formErr} busy={busy} busyLabel="Saving…" label={m ? 'Save model' : 'Register model'} onCancel={props.onCancel} />
    </form>
  );
}

export function Models() {
  const s = useStore(session);
  const write = canWrite(s);
  const L = useStore(lens);
  const list = useAsync(() => get<Page<Model>>('/api/v1/models?limit=200'), []);
  const [editing, setEditing] = useState<Model | 'new' | null>(null);
  const [deleting, setDeleting] = useState<Model | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const rows = list.data?.data ?? [];
  const toggle = async (m: Model) => {
    setErr(null);
    try {
      await patch(modelPath(m.model_name), { enabled: !m.enabled });
      list.reload();
    } catch (e) {
      setErr(e);
    }
  };
  return (
    <div class="page">
      <div class="page-head">
        <h1>Models</h1>
        <div class="spacer" />
        <ReadOnlyHint show={!write} />
        <button type="button" class="btn primary" disabled={!write} onClick={() => setEditing('new')}>
          Register model
        </button>
      </div>
      <ErrorBox error={err} />
      <Panel title="Registered models">
        <ErrorBox error={list.error} onRetry={list.reload} />
        {list.loading && !list.data ? (
          <Loading />
        ) : rows.length === 0 ? (
          <Empty>No models registered. Requests are refused until a model is registered.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="data" aria-label="Models">
              <thead>
                <tr>
                  <th>Model</th>
                  <th>Upstream</th>
                  <th>API base</th>
                  <th>Key</th>
                  <th class="num">In $/token</th>
                  <th class="num">Out $/token</th>
                  <th class="num">Context</th>
                  <th class="num">Adm. weight</th>
                  <th class="num">Max in flight</th>
                  <th class="num">In flight</th>
                  <th class="num">Queued</th>
                  <th>Tags</th>
                  <th>State</th>
                  <th>Updated</th>
                  <th class="actions-col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((m) => {
                  const live = L.frame?.models?.find((x) => x.name === m.model_name);
                  return (
                    <tr key={m.model_name} data-model={m.model_name}>
                      <td>
                        <code>{m.model_name}</code>
                      </td>
                      <td>{m.upstream_model ?? <span class="muted">same</span>}</td>
                      <td class="ellipsis" title={m.api_base ?? ''}>
                        {m.api_base ?? <span class="muted">default</span>}
                      </td>
                      <td>{m.has_api_key ? <Badge tone="info">set</Badge> : <span class="muted">—</span>}</td>
                      <td class="num">{fmtNum(m.input_cost_per_token, 8)}</td>
                      <td class="num">{fmtNum(m.output_cost_per_token, 8)}</td>
                      <td class="num">{fmtInt(m.context_window)}</td>
                      <td class="num">{fmtNum(m.admission_weight, 2)}</td>
                      <td class="num">{fmtInt(m.max_in_flight)}</td>
                      <td class="num" data-testid={`model-${m.model_name}-in-flight`}>{live ? fmtInt(live.in_flight) : '—'}</td>
                      <td class="num">{live ? fmtInt(live.queued) : '—'}</td>
                      <td>{m.tags.length ? m.tags.join(', ') : <span class="muted">—</span>}</td>
                      <td>{m.enabled ? <Badge tone="ok">enabled</Badge> : <Badge tone="bad">disabled</Badge>}</td>
                      <td>{fmtAgo(m.updated_at)}</td>
                      <td class="actions-col">
                        <button type="button" class="btn small" disabled={!write} onClick={() => setEditing(m)} aria-label={`Edit model ${m.model_name}`}>
                          Edit
                        </button>
                        <button type="button" class="btn small" disabled={!write} onClick={() => toggle(m)} aria-label={`${m.enabled ? 'Disable' : 'Enable'} model ${m.model_name}`}>
                          {m.enabled ? 'Disable' : 'Enable'}
                        </button>
                        <button type="button" class="btn small danger-outline" disabled={!write} onClick={() => setDeleting(m)} aria-label={`Delete model ${m.model_name}`}>
                          Delete
                        </button>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </Panel>
      {editing && (
        <Dialog title={editing === 'new' ? 'Register a model' : `Edit model ${editing.model_name}`} onClose={() => setEditing(null)} wide>
          <ModelForm
            model={editing === 'new' ? undefined : editing}
            onCancel={() => setEditing(null)}
            onDone={() => {
              setEditing(null);
              list.reload();
            }}
          />
        </Dialog>
      )}
      {deleting && (
        <ConfirmDialog
          title={`Delete model ${deleting.model_name}`}
          body={<p>Requests for this model are refused once it is deleted.</p>}
          typeToConfirm={deleting.model_name}
          confirmLabel="Delete model"
          danger
          onConfirm={async () => {
            await del(modelPath(deleting.model_name));
            list.reload();
          }}
          onClose={() => setDeleting(null)}
        />
      )}
    </div>
  );
}
