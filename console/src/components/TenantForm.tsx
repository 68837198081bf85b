import { useState } from 'preact/hooks';
import { post, patch, enc } from '../api';
import type { Tenant, Quota } from '../types';
import { Field, FormFooter, apiFieldErrors, val, checked } from './ui';
import { nameProblem, parseOptInt, parseOptFloat } from '../format';

const KNOWN = ['name', 'weight', 'group', 'allowed_models', 'disabled', 'never_degrade', 'quota.tpm', 'quota.rpm', 'quota.max_in_flight', 'quota.monthly_budget', 'quota.lifetime_budget', 'quota.fail_closed', 'quota'];

const s = (n: number | null | undefined) => (n == null ? '' : String(n));

export function TenantForm(props: {
  tenant?: Tenant;
  groups: string[];
  models: string[];
  onDone: (t: Tenant) => void;
  onCancel: () => void;
}) {
  const t = props.tenant;
  const [f, setF] = useState({
    name: t?.name ?? '',
    weight: t ? String(t.weight) : '1',
    group: t?.group ?? '',
    allowed_models: (t?.allowed_models ?? []).join(', '),
    disabled: t?.disabled ?? false,
    never_degrade: t?.never_degrade ?? false,
    tpm: s(t?.quota?.tpm),
    rpm: s(t?.quota?.rpm),
    max_in_flight: s(t?.quota?.max_in_flight),
    monthly_budget: s(t?.quota?.monthly_budget),
    lifetime_budget: s(t?.quota?.lifetime_budget),
    fail_closed: t?.quota?.fail_closed ?? false,
  });
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [formErr, setFormErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof f) => (e: Event) => setF({ ...f, [k]: val(e) });
  const setB = (k: keyof typeof f) => (e: Event) => setF({ ...f, [k]: checked(e) });

  const submit = async (e: Event) => {
    e.preventDefault();
    const ce: Record<string, string> = {};
    if (!t) {
      const np = nameProblem(f.name.trim());
      if (np) ce.name = np;
    }
    const w = parseOptInt(f.weight, 1);
    if (w === null) ce.weight = 'Required.';
    else if (typeof w === 'string') ce.weight = w;
    // The API replaces the whole quota: keep the fields this form does not show (the
    // MCP tool-call limits), or saving would clear them.
    const quota: Quota = { ...t?.quota, fail_closed: f.fail_closed };
    for (const k of ['tpm', 'rpm', 'max_in_flight'] as const) {
      const v = parseOptInt(f[k], 1);
      if (typeof v === 'string') ce[`quota.${k}`] = v;
      else quota[k] = v;
    }
    for (const k of ['monthly_budget', 'lifetime_budget'] as const) {
      const v = parseOptFloat(f[k], 0);
      if (typeof v === 'string') ce[`quota.${k}`] = v;
      else quota[k] = v;
    }
    setErrs(ce);
    setFormErr(null);
    if (Object.keys(ce).length) return;
    const allowed = f.allowed_models
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    const body: Record<string, unknown> = {
      weight: w,
      allowed_models: allowed,
      disabled: f.disabled,
      never_degrade: f.never_degrade,
      quota,
    };
    const group = f.group.trim();
    if (!t) {
      body.name = f.name.trim();
      if (group) body.group = group;
    } else if (group !== (t.group ?? '')) {
      body.group = group || null;
    }
    setBusy(true);
    try {
      const res = t ? await patch<Tenant>(`/api/v1/tenants/${enc(t.name)}`, body) : await post<Tenant>('/api/v1/tenants', body);
      props.onDone(res);
    } catch (err) {
      const { fields, form } = apiFieldErrors(err, KNOWN);
      setErrs(fields);
      setFormErr(form);
      setBusy(false);
    }
  };

  const num = (k: keyof typeof f, label: string, hint?: string) => {
    const key = ['tpm', 'rpm', 'max_in_flight', 'monthly_budget', 'lifetime_budget'].includes(k) ? `quota.${k}` : k;
    return (
      <Field label={label} id={`tf-${k}`} error={errs[key]} hint={hint}>
        <input id={`tf-${k}`} inputMode="decimal" value={f[k] as string} onInput={set(k)} aria-invalid={!!errs[key]} />
      </Field>
    );
  };

  return (
    <form onSubmit={submit} noValidate class="form" aria-label={t ? `Edit tenant ${t.name}` : 'New tenant'}>
      <div class="form-grid">
        <Field label="Name" id="tf-name" error={errs.name} hint={t ? 'The name cannot be changed here.' : 'Lowercase letters, digits, ".", "_" and "-".'}>
          <input id="tf-name" value={f.name} onInput={set('name')} disabled={!!t} autoComplete="off" aria-invalid={!!errs.name} />
        </Field>
        <Field label="Weight" id="tf-weight" error={errs.weight} hint="Share of contended slots relative to other tenants (≥ 1). Live on save.">
          <input id="tf-weight" inputMode="numeric" value={f.weight} onInput={set('weight')} aria-invalid={!!errs.weight} />
        </Field>
        <Field label="Group" id="tf-group" error={errs.group} hint="Fairshare group (empty: default).">
          <input id="tf-group" list="tf-groups" value={f.group} onInput={set('group')} autoComplete="off" />
          <datalist id="tf-groups">
            {props.groups.map((g) => (
              <option key={g} value={g} />
            ))}
          </datalist>
        </Field>
        <Field label="Allowed models" id="tf-allowed" error={errs.allowed_models} hint={`Comma-separated; empty allows all. Known: ${props.models.join(', ') || 'none'}`}>
          <input id="tf-allowed" value={f.allowed_models} onInput={set('allowed_models')} autoComplete="off" />
        </Field>
      </div>
      <fieldset>
        <legend>Quota (empty: no limit)</legend>
        <div class="form-grid three">
          {num('tpm', 'Tokens per minute')}
          {num('rpm', 'Requests per minute')}
          {num('max_in_flight', 'Max in flight')}
          {num('monthly_budget', 'Monthly budget')}
          {num('lifetime_budget', 'Lifetime budget')}
          <div class="field checkbox">
            <label>
              <input type="checkbox" checked={f.fail_closed} onChange={setB('fail_closed')} /> Fail closed when the budget store is down
            </label>
          </div>
        </div>
      </fieldset>
      <div class="checks">
        <label>
          <input type="checkbox" checked={f.disabled} onChange={setB('disabled')} /> Disabled (refuse its requests)
        </label>
        <label>
          <input type="checkbox" checked={f.never_degrade} onChange={setB('never_degrade')} /> Never degrade (no brownout)
        </label>
      </div>
      <FormFooter error={formErr} busy={busy} busyLabel="Saving…" label={t ? 'Save changes' : 'Create tenant'} onCancel={props.onCancel} />
    </form>
  );
}
