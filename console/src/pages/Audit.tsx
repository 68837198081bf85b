import { useState } from 'preact/hooks';
import { get, qs, type Page } from '../api';
import type { AuditEntry } from '../types';
import { Empty, ErrorBox, Loading, Pager, Panel, useAsync, usePager, val } from '../components/ui';
import { diff, fmtAgo, fmtTime, show } from '../format';

function Diff(props: { e: AuditEntry }) {
  const rows = diff(props.e.before, props.e.after);
  const [all, setAll] = useState(false);
  const changed = rows.filter((r) => r.changed);
  const shown = all ? rows : changed;
  if (!rows.length) return <p class="muted small">No snapshot recorded.</p>;
  return (
    <div class="diff">
      <table class="data diff-table" aria-label={`Changes in ${props.e.action}`}>
        <thead>
          <tr>
            <th>Field</th>
            <th>Before</th>
            <th>After</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((r) => (
            <tr key={r.field} class={r.changed ? 'changed' : ''}>
              <td>
                <code>{r.field}</code>
              </td>
              <td class={r.changed && r.before !== undefined ? 'del' : ''}>{show(r.before)}</td>
              <td class={r.changed && r.after !== undefined ? 'ins' : ''}>{show(r.after)}</td>
            </tr>
          ))}
          {shown.length === 0 && (
            <tr>
              <td colSpan={3} class="muted">
                No field changed.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      {rows.length > changed.length && (
        <button type="button" class="btn ghost small" onClick={() => setAll(!all)}>
          {all ? 'Show changed fields only' : `Show all ${rows.length} fields`}
        </button>
      )}
    </div>
  );
}

/** A readable name for the entry's resource from its snapshots (ids are opaque). */
function resourceName(e: AuditEntry): string {
  const top = (e.after ?? e.before ?? {}) as Record<string, unknown>;
  // A rotation records { old_key, new_key }.
  const snap = (top.old_key && typeof top.old_key === 'object' ? top.old_key : top) as Record<string, unknown>;
  for (const k of ['name', 'model_name', 'prefix']) {
    const v = snap[k];
    if (typeof v === 'string' && v !== e.resource_id) return v;
  }
  return '';
}

function Entry(props: { e: AuditEntry }) {
  const e = props.e;
  const [open, setOpen] = useState(false);
  const n = diff(e.before, e.after).filter((r) => r.changed).length;
  return (
    <>
      <tr class="audit-row" data-action={e.action}>
        <td class="nowrap" title={fmtTime(e.at)}>
          {fmtTime(e.at)}
          <div class="muted small">{fmtAgo(e.at)}</div>
        </td>
        <td>{e.actor}</td>
        <td>
          <code>{e.action}</code>
        </td>
        <td>
          {e.resource_kind} <b>{resourceName(e)}</b> <code class="muted">{e.resource_id}</code>
        </td>
        <td class="num">{n}</td>
        <td>
          <button type="button" class="btn small" aria-expanded={open} onClick={() => setOpen(!open)}>
            {open ? 'Hide diff' : 'Show diff'}
          </button>
        </td>
      </tr>
      {open && (
        <tr class="audit-diff">
          <td colSpan={6}>
            <Diff e={e} />
          </td>
        </tr>
      )}
    </>
  );
}

export function Audit() {
  const [kind, setKind] = useState('');
  const [rid, setRid] = useState('');
  const [actor, setActor] = useState('');
  const [applied, setApplied] = useState({ kind: '', rid: '', actor: '' });
  const pager = usePager();
  const resource = applied.kind ? (applied.rid.trim() ? `${applied.kind}:${applied.rid.trim()}` : applied.kind) : '';
  const list = useAsync(
    () => get<Page<AuditEntry>>(`/api/v1/audit${qs({ resource, actor: applied.actor.trim(), limit: 50, cursor: pager.cursor })}`),
    [resource, applied.actor, pager.cursor],
  );
  const rows = list.data?.data ?? [];
  return (
    <div class="page">
      <div class="page-head">
        <h1>Audit trail</h1>
        <span class="muted">Every change made through the admin API, newest first.</span>
      </div>
      <form
        class="toolbar"
        aria-label="Audit filters"
        onSubmit={(e) => {
          e.preventDefault();
          pager.reset();
          setApplied({ kind, rid, actor });
        }}
      >
        <label>
          Resource{' '}
          <select value={kind} onChange={(e) => setKind(val(e))} aria-label="Resource kind">
            <option value="">any</option>
            <option value="tenant">tenant</option>
            <option value="key">key</option>
            <option value="model">model</option>
            <option value="group">group</option>
          </select>
        </label>
        <label>
          Resource id <input value={rid} size={16} placeholder="any" disabled={!kind} onInput={(e) => setRid(val(e))} />
        </label>
        <label>
          Actor <input value={actor} size={12} placeholder="any" onInput={(e) => setActor(val(e))} />
        </label>
        <button type="submit" class="btn primary small">
          Apply
        </button>
      </form>
      <Panel>
        <ErrorBox error={list.error} onRetry={list.reload} />
        {list.loading && !list.data ? (
          <Loading />
        ) : rows.length === 0 ? (
          <Empty>No audit entries match.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="data" aria-label="Audit entries">
              <thead>
                <tr>
                  <th>When</th>
                  <th>Actor</th>
                  <th>Action</th>
                  <th>Resource</th>
                  <th class="num">Changed fields</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {rows.map((e) => (
                  <Entry key={String(e.id)} e={e} />
                ))}
              </tbody>
            </table>
          </div>
        )}
        <Pager page={pager.page} hasNext={!!list.data?.next_cursor} onPrev={pager.prev} onNext={() => list.data?.next_cursor && pager.next(list.data.next_cursor)} />
      </Panel>
    </div>
  );
}
