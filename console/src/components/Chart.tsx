import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export const PALETTE = ['#2563eb', '#16a34a', '#d97706', '#dc2626', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c'];

export interface SeriesSpec {
  label: string;
  color?: string;
  /** Which y scale: 'y' (left) or 'y2' (right). */
  scale?: 'y' | 'y2';
  fill?: boolean;
  dash?: boolean;
  fmt?: (v: number) => string;
  /** Draw across missing (null) points. */
  spanGaps?: boolean;
  /** Mark each point (for sparse, bucketed data). */
  points?: boolean;
}

/**
 * A uPlot time chart. `data[0]` is x in seconds; each further array is one series.
 * The plot is rebuilt when the series set changes and updated in place otherwise.
 */
export function Chart(props: {
  title: string;
  series: SeriesSpec[];
  data: (number | null)[][];
  height?: number;
  yLabel?: string;
  y2Label?: string;
  yFmt?: (v: number) => string;
  y2Fmt?: (v: number) => string;
  empty?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = props.series.map((s) => `${s.label}|${s.scale ?? 'y'}`).join(',') + `|${props.height ?? 180}`;
  const hasData = props.data.length > 0 && props.data[0].length > 0;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const hasY2 = props.series.some((s) => s.scale === 'y2');
    const axisFmt = (f?: (v: number) => string) => (_u: uPlot, vals: number[]) => vals.map((v) => (v == null ? '' : f ? f(v) : String(v)));
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 180,
      legend: { show: true, live: true },
      hooks: {
        // With the pointer away, the legend shows the latest values.
        ready: [
          (u: uPlot) => {
            const n = u.data[0]?.length ?? 0;
            if (n > 0) u.setLegend({ idx: n - 1 });
          },
        ],
      },
      cursor: { drag: { x: false, y: false }, points: { size: 5 } },
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] }, ...(hasY2 ? { y2: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } } : {}) },
      axes: [
        { stroke: '#64748b', grid: { stroke: '#eef2f7', width: 1 }, ticks: { stroke: '#e2e8f0', width: 1 } },
        {
          stroke: '#64748b',
          grid: { stroke: '#eef2f7', width: 1 },
          ticks: { stroke: '#e2e8f0', width: 1 },
          values: axisFmt(props.yFmt),
          label: props.yLabel,
          size: 56,
        },
        ...(hasY2
          ? [
              {
                scale: 'y2',
                side: 1,
                stroke: '#64748b',
                grid: { show: false },
                ticks: { stroke: '#e2e8f0', width: 1 },
                values: axisFmt(props.y2Fmt),
                label: props.y2Label,
                size: 56,
              } as uPlot.Axis,
            ]
          : []),
      ],
      series: [
        {},
        ...props.series.map((s, i) => {
          const color = s.color ?? PALETTE[i % PALETTE.length];
          return {
            label: s.label,
            stroke: color,
            width: 1.5,
            scale: s.scale ?? 'y',
            fill: s.fill ? color + '22' : undefined,
            dash: s.dash ? [4, 3] : undefined,
            points: s.points
              ? {
                  show: true,
                  size: 5,
                  fill: color,
                  // Mark only the buckets that have something.
                  filter: (u: uPlot, si: number) => {
                    const ys = u.data[si] as (number | null)[];
                    const out: number[] = [];
                    for (let i = 0; i < ys.length; i++) if (ys[i]) out.push(i);
                    return out;
                  },
                }
              : { show: false },
            spanGaps: s.spanGaps ?? false,
            value: (_u: uPlot, v: number | null) => (v == null ? '—' : s.fmt ? s.fmt(v) : String(Math.round(v * 100) / 100)),
          } as uPlot.Series;
        }),
      ],
    };
    const u = new uPlot(opts, props.data as uPlot.AlignedData, el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = Math.max(200, el.clientWidth);
      if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height: props.height ?? 180 });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);

  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    u.setData(props.data as uPlot.AlignedData);
    // With the pointer away, the legend shows the latest values.
    const n = props.data[0]?.length ?? 0;
    if (n > 0 && u.cursor.idx == null) u.setLegend({ idx: n - 1 });
  }, [props.data]);

  return (
    <figure class="chart" aria-label={props.title}>
      <figcaption>{props.title}</figcaption>
      <div class="chart-box">
        <div ref={box} class="chart-canvas" />
        {!hasData && <div class="chart-empty">{props.empty ?? 'No data yet'}</div>}
      </div>
    </figure>
  );
}
