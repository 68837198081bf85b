import { useState } from 'preact/hooks';
import { get, put, del, enc } from '../api';
import type { Group } from '../types';
import { session, canWrite } from '../session';
import { useStore } from '../store';
import { lens } from '../lens';
import { ConfirmDialog, Dialog, Empty, ErrorBox, Field, FormFooter, Loading, Panel, ReadOnlyHint, ShareBar, apiFieldErrors, useAsync, val } from '../components/ui';
import { fmtAgo, fmtInt, fmtPct, nameProblem, parseOptInt } from '../format';

function GroupForm(props: { group?: Group; onDone: () => void; onCancel: () => void }) {
  const g = props.group;
  const [name, setName] = useState(g?.name ?? '');
  const [weight, setWeight] = useState(g ? String(g.weight) : '1');
  const [reserved, setReserved] = useState(g?.reserved_slots != null ? String(g.reserved_slots) : '');
  const [max, setMax] = useState(g?.max_slots != null ? String(g.max_slots) : '');
  const [errs, setErrs] = useState<Record<string, string>>({});
  const [formErr, setFormErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const ce: Record<string, string> = {};
    const np = nameProblem(name.trim());
    if (np) ce.name = np;
    const w = parseOptInt(weight, 1);
    if (w === null) ce.weight = 'Required.';
    else if (typeof w === 'string') ce.weight = w;
    const r = parseOptInt(reserved, 0);
    if (typeof r === 'string') ce.reserved_slots = r;
    const m = parseOptInt(max, 1);
    if (typeof m === 'string') ce.max_slots = m;
    setErrs(ce);
    setFormErr(null);
    if (Object.keys(ce).length) return;
    setBusy(true);
    try {
      await put(`/api/v1/groups/${enc(name.trim())}`, { weight: w, reserved_slots: r, max_slots: m });
      props.onDone();
    } catch (err) {
      const x = apiFieldErrors(err, ['name', 'weight', 'reserved_slots', 'max_slots']);
      setErrs(x.fields);
      setFormErr(x.form);
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} noValidate class="form">
      <Field label="Name" id="gf-name" error={errs.name}>
        <input id="gf-name" value={name} disabled={!!g} onInput={(e) => setName(val(e))} autoComplete="off" />
      </Field>
      <Field label="Weight" id="gf-weight" error={errs.weight} hint="Share of contended slots relative to other groups (≥ 1).">
        <input id="gf-weight" inputMode="numeric" value={weight} onInput={(e) => setWeight(val(e))} />
      </Field>
      <Field label="Reserved slots" id="gf-reserved" error={errs.reserved_slots} hint="Guaranteed while the group has requests waiting (empty: none).">
        <input id="gf-reserved" inputMode="numeric" value={reserved} onInput={(e) => setReserved(val(e))} />
      </Field>
      <Field label="Max slots" id="gf-max" error={errs.max_slots} hint="Most slots the group may hold (empty: only the pool bounds it).">
        <input id="gf-max" inputMode="numeric" value={max} onInput={(e) => setMax(val(e))} />
      </Field>
      <FormFooter error={formErr} busy={busy} busyLabel="Saving…" label={g ? 'Save group' : 'Create group'} onCancel={props.onCancel} />
    </form>
  );
}

export function Groups() {
  const s = useStore(session);
  const write = canWrite(s);
  const L = useStore(lens);
  const list = useAsync(() => get<{ data: Group[] }>('/api/v1/groups'), []);
  const [editing, setEditing] = useState<Group | 'new' | null>(null);
  const [deleting, setDeleting] = useState<Group | null>(null);
  const stored = list.data?.data ?? [];
  // Groups the scheduler knows but the store does not (the implicit "default").
  const implicit: Group[] = (L.frame?.groups ?? [])
    .filter((g) => !stored.some((s) => s.name === g.name))
    .map((g) => ({ name: g.name, weight: g.weight, reserved_slots: g.reserved_slots, max_slots: g.max_slots, created_at: 0, updated_at: 0 }));
  const rows = [...stored, ...implicit];
  return (
    <div class="page">
      <div class="page-head">
        <h1>Fairshare groups</h1>
        <div class="spacer" />
        <ReadOnlyHint show={!write} />
        <button type="button" class="btn primary" disabled={!write} onClick={() => setEditing('new')}>
          New group
        </button>
      </div>
      <Panel title="Groups" actions={<span class="muted small">Slots are shared between groups by weight, then between a group's tenants.</span>}>
        <ErrorBox error={list.error} onRetry={list.reload} />
        {list.loading && !list.data ? (
          <Loading />
        ) : rows.length === 0 ? (
          <Empty>No groups defined: every tenant competes in the default group.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="data" aria-label="Groups">
              <thead>
                <tr>
                  <th>Name</th>
                  <th class="num">Weight</th>
                  <th class="num">Reserved slots</th>
                  <th class="num">Max slots</th>
                  <th class="num">In flight</th>
                  <th class="num">Queued</th>
                  <th>Actual / target share</th>
                  <th>Updated</th>
                  <th class="actions-col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((g) => {
                  const live = L.frame?.groups.find((x) => x.name === g.name);
                  const isImplicit = g.created_at === 0;
                  return (
                    <tr key={g.name} data-group={g.name}>
                      <td>
                        {g.name}
                        {isImplicit && (
                          <span class="badge muted small-badge" title="Not stored: the scheduler's built-in group. Saving it stores it.">
                            built-in
                          </span>
                        )}
                      </td>
                      <td class="num">{fmtInt(g.weight)}</td>
                      <td class="num">{g.reserved_slots ?? '—'}</td>
                      <td class="num">{g.max_slots ?? '—'}</td>
                      <td class="num">{live ? fmtInt(live.in_flight) : '—'}</td>
                      <td class="num">{live ? fmtInt(live.queued) : '—'}</td>
                      <td class="wide-cell">
                        {live ? (
                          <div class="share-cell">
                            <ShareBar value={live.actual_share} target={live.target_share} />
                            <span class="num small">
                              {fmtPct(live.actual_share)} / {fmtPct(live.target_share)}
                            </span>
                          </div>
                        ) : (
                          <span class="muted">idle</span>
                        )}
                      </td>
                      <td>{isImplicit ? <span class="muted">—</span> : fmtAgo(g.updated_at)}</td>
                      <td class="actions-col">
                        <button type="button" class="btn small" disabled={!write} onClick={() => setEditing(g)} aria-label={`Edit group ${g.name}`}>
                          Edit
                        </button>
                        <button type="button" class="btn small danger-outline" disabled={!write} onClick={() => setDeleting(g)} aria-label={`Delete group ${g.name}`} hidden={isImplicit}>
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
        <Dialog title={editing === 'new' ? 'New group' : `Edit group ${editing.name}`} onClose={() => setEditing(null)}>
          <GroupForm
            group={editing === 'new' ? undefined : editing}
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
          title={`Delete group ${deleting.name}`}
          body={<p>Tenants in this group fall back to the default group.</p>}
          typeToConfirm={deleting.name}
          confirmLabel="Delete group"
          danger
          onConfirm={async () => {
            await del(`/api/v1/groups/${enc(deleting.name)}`);
            list.reload();
          }}
          onClose={() => setDeleting(null)}
        />
      )}
    </div>
  );
}
