import type { ComponentChildren, JSX } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, errorText } from '../api';
import { navigate, BASE } from '../router';

export function Link(props: { to: string; class?: string; children: ComponentChildren; title?: string }) {
  const onClick = (e: MouseEvent) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(props.to);
  };
  return (
    <a href={BASE + props.to} class={props.class} onClick={onClick} title={props.title}>
      {props.children}
    </a>
  );
}

export function Loading(props: { label?: string }) {
  return (
    <div class="loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" />
      {props.label ?? 'Loading…'}
    </div>
  );
}

export function ErrorBox(props: { error: unknown; onRetry?: () => void }) {
  if (!props.error) return null;
  return (
    <div class="error-box" role="alert">
      <strong>Error: </strong>
      {errorText(props.error)}
      {props.onRetry && (
        <button type="button" class="btn small" onClick={props.onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}

export function Empty(props: { children: ComponentChildren }) {
  return <div class="empty">{props.children}</div>;
}

/** Loads once (and on `deps` change); `reload` re-runs it. Keeps the last data while reloading. */
export function useAsync<T>(fn: () => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const run = useCallback(() => {
    const n = ++seq.current;
    setLoading(true);
    fn().then(
      (d) => {
        if (n !== seq.current) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (e) => {
        if (n !== seq.current) return;
        setError(e);
        setLoading(false);
      },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(() => {
    run();
    return () => {
      seq.current++;
    };
  }, [run]);
  return { data, error, loading, reload: run, setData };
}

/** Calls fn now and every `ms` while mounted (skips ticks while the tab is hidden). */
export function useInterval(fn: () => void, ms: number, deps: unknown[] = []) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    const id = setInterval(() => {
      if (!document.hidden) saved.current();
    }, ms);
    return () => clearInterval(id);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [ms, ...deps]);
}

export function Dialog(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => {
      if (d?.open) d.close();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      class={props.wide ? 'dialog wide' : 'dialog'}
      aria-label={props.title}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      <header class="dialog-head">
        <h2>{props.title}</h2>
        <button type="button" class="btn ghost" aria-label="Close" onClick={props.onClose}>
          ×
        </button>
      </header>
      <div class="dialog-body">{props.children}</div>
    </dialog>
  );
}

/** A labelled form row; `error` (from the API's `param` or client checks) shows under it. */
export function Field(props: {
  label: string;
  id: string;
  error?: string | null;
  hint?: string;
  children: ComponentChildren;
}) {
  return (
    <div class={props.error ? 'field invalid' : 'field'}>
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint && !props.error && <div class="hint">{props.hint}</div>}
      {props.error && (
        <div class="field-error" id={`${props.id}-error`} role="alert">
          {props.error}
        </div>
      )}
    </div>
  );
}

/** Field errors from an API error: the message goes next to its `param` (or the form). */
export function apiFieldErrors(e: unknown, known: string[]): { fields: Record<string, string>; form: string | null } {
  if (e instanceof ApiError && e.param) {
    const p = e.param;
    const hit = known.find((k) => p === k || p.startsWith(k + '.') || p.startsWith(k + '['));
    const top = p.split(/[.[]/)[0];
    if (hit) return { fields: { [hit]: e.message }, form: null };
    if (known.includes(top)) return { fields: { [top]: e.message }, form: null };
  }
  return { fields: {}, form: errorText(e) };
}

export function ConfirmDialog(props: {
  title: string;
  body: ComponentChildren;
  confirmLabel: string;
  typeToConfirm?: string;
  danger?: boolean;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const [typed, setTyped] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const ok = !props.typeToConfirm || typed === props.typeToConfirm;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ok || busy) return;
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm();
      props.onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <Dialog title={props.title} onClose={props.onClose}>
      <form onSubmit={submit} noValidate>
        <div class="confirm-body">{props.body}</div>
        {props.typeToConfirm && (
          <Field label={`Type "${props.typeToConfirm}" to confirm`} id="confirm-name">
            <input
              id="confirm-name"
              autoComplete="off"
              value={typed}
              onInput={(e) => setTyped((e.target as HTMLInputElement).value)}
            />
          </Field>
        )}
        <ErrorBox error={error} />
        <div class="actions">
          <button type="button" class="btn" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class={props.danger ? 'btn danger' : 'btn primary'} disabled={!ok || busy}>
            {busy ? 'Working…' : props.confirmLabel}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** Shows a new key's secret once; the caller drops it from memory on close. */
export function SecretDialog(props: { secret: string; prefix: string; note?: string; onClose: () => void }) {
  const [copied, setCopied] = useState<string | null>(null);
  const ref = useRef<HTMLInputElement>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.secret);
      setCopied('Copied to the clipboard.');
    } catch {
      ref.current?.select();
      setCopied('Select the text and copy it (the clipboard is not available here).');
    }
  };
  return (
    <Dialog title="New API key" onClose={props.onClose}>
      <p>
        This is the only time the secret is shown. Copy it now and store it safely; the gateway keeps only a hash.
      </p>
      {props.note && <p class="muted">{props.note}</p>}
      <Field label="Secret" id="new-secret">
        <div class="secret-row">
          <input id="new-secret" ref={ref} readOnly value={props.secret} class="mono" autoComplete="off" spellcheck={false} />
          <button type="button" class="btn" onClick={copy}>
            Copy
          </button>
        </div>
      </Field>
      <p class="muted">
        Prefix <code>{props.prefix}</code>
      </p>
      {copied && (
        <p class="ok" role="status">
          {copied}
        </p>
      )}
      <div class="actions">
        <button type="button" class="btn primary" onClick={props.onClose}>
          Done
        </button>
      </div>
    </Dialog>
  );
}

/** A horizontal bar of `value` in [0,1], with an optional target marker. */
export function ShareBar(props: { value: number; target?: number; label?: string }) {
  const v = Math.max(0, Math.min(1, props.value || 0));
  const t = props.target === undefined ? undefined : Math.max(0, Math.min(1, props.target || 0));
  return (
    <div class="sharebar" role="img" aria-label={props.label ?? `${(v * 100).toFixed(1)}%`}>
      <div class="sharebar-fill" style={{ width: `${v * 100}%` }} />
      {t !== undefined && <div class="sharebar-target" style={{ left: `${t * 100}%` }} />}
    </div>
  );
}

export function Meter(props: { used: number; limit: number | null | undefined; label: string; fmt?: (n: number) => string }) {
  const f = props.fmt ?? ((n: number) => String(n));
  const frac = props.limit ? props.used / props.limit : 0;
  const cls = frac >= 0.9 ? 'meter-fill hot' : frac >= 0.7 ? 'meter-fill warm' : 'meter-fill';
  return (
    <div class="meter">
      <div class="meter-head">
        <span>{props.label}</span>
        <span class="num">
          {f(props.used)}
          {props.limit != null ? ` / ${f(props.limit)}` : ' (no limit)'}
        </span>
      </div>
      {props.limit != null && (
        <div class="meter-track" role="img" aria-label={`${props.label}: ${(frac * 100).toFixed(0)}% used`}>
          <div class={cls} style={{ width: `${Math.min(100, frac * 100)}%` }} />
        </div>
      )}
    </div>
  );
}

export function Sparkline(props: { values: number[]; width?: number; height?: number; max?: number; label?: string }) {
  const w = props.width ?? 90;
  const h = props.height ?? 20;
  const vals = props.values;
  if (vals.length < 2) return <svg class="spark" width={w} height={h} aria-hidden="true" />;
  const max = props.max ?? Math.max(1e-9, ...vals);
  const step = w / (vals.length - 1);
  const pts = vals.map((v, i) => `${(i * step).toFixed(1)},${(h - 1 - (Math.min(v, max) / max) * (h - 2)).toFixed(1)}`).join(' ');
  return (
    <svg class="spark" width={w} height={h} viewBox={`0 0 ${w} ${h}`} role="img" aria-label={props.label ?? 'trend'}>
      <polyline points={pts} fill="none" stroke="currentColor" stroke-width="1.25" />
    </svg>
  );
}

export function Stat(props: { label: string; value: ComponentChildren; sub?: ComponentChildren; tone?: string }) {
  return (
    <div class={`stat ${props.tone ?? ''}`}>
      <div class="stat-label">{props.label}</div>
      <div class="stat-value num">{props.value}</div>
      {props.sub !== undefined && <div class="stat-sub">{props.sub}</div>}
    </div>
  );
}

export function Badge(props: { tone?: 'ok' | 'warn' | 'bad' | 'muted' | 'info'; children: ComponentChildren }) {
  return <span class={`badge ${props.tone ?? 'muted'}`}>{props.children}</span>;
}

export function Panel(props: { title?: ComponentChildren; actions?: ComponentChildren; children: ComponentChildren; class?: string }) {
  return (
    <section class={`panel ${props.class ?? ''}`}>
      {(props.title || props.actions) && (
        <header class="panel-head">
          {props.title && <h2>{props.title}</h2>}
          {props.actions && <div class="panel-actions">{props.actions}</div>}
        </header>
      )}
      <div class="panel-body">{props.children}</div>
    </section>
  );
}

/** Cursor paging: keeps a stack of cursors so "Previous" works. */
export function usePager() {
  const [stack, setStack] = useState<(string | null)[]>([null]);
  const cursor = stack[stack.length - 1];
  return {
    cursor,
    page: stack.length,
    next: (c: string) => setStack([...stack, c]),
    prev: () => setStack(stack.length > 1 ? stack.slice(0, -1) : stack),
    reset: () => setStack([null]),
  };
}

export function Pager(props: { page: number; hasNext: boolean; onPrev: () => void; onNext: () => void }) {
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" class="btn small" disabled={props.page <= 1} onClick={props.onPrev}>
        ← Previous
      </button>
      <span class="muted">Page {props.page}</span>
      <button type="button" class="btn small" disabled={!props.hasNext} onClick={props.onNext}>
        Next →
      </button>
    </nav>
  );
}

export function ReadOnlyHint(props: { show: boolean }) {
  if (!props.show) return null;
  return (
    <span class="readonly-hint" title="Viewer sessions cannot change anything">
      read-only
    </span>
  );
}

export type InputEv = JSX.TargetedEvent<HTMLInputElement, Event>;
export const val = (e: Event) => (e.target as HTMLInputElement).value;
export const checked = (e: Event) => (e.target as HTMLInputElement).checked;

export function FormError(props: { message: string | null }) {
  if (!props.message) return null;
  return (
    <div class="error-box" role="alert">
      {props.message}
    </div>
  );
}

/** The error line and the Cancel / submit buttons that end every form. */
export function FormFooter(props: { error: string | null; busy: boolean; busyLabel: string; label: string; onCancel: () => void }) {
  return (
    <>
      <FormError message={props.error} />
      <div class="actions">
        <button type="button" class="btn" onClick={props.onCancel}>
          Cancel
        </button>
        <button type="submit" class="btn primary" disabled={props.busy}>
          {props.busy ? props.busyLabel : props.label}
        </button>
      </div>
    </>
  );
}
